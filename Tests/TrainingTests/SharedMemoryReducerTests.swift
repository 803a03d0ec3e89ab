import Communication
import Foundation
import Tensors
import Testing

@testable import GradientExchange
@testable import Training

/// `SharedMemoryReducer` over K thread-ranks: each step's sums against a naive rank-order sum of what the ranks
/// wrote, bit for bit, on every rank; the slots and the sums are reused across steps.
@Suite struct SharedMemoryReducerTests {
  /// Rank r's gradient value at element i of step s: distinct per rank, element and step, with magnitudes that
  /// make the order of the additions visible in the rounding.
  static func value(rank: Int, element: Int, step: Int) -> Float {
    var generator = Xoshiro256(seed: UInt64(1000 * step + rank), stream: UInt64(element))
    return generator.nextFloat(in: -1, 1) * Float([1, 1e-4, 3e3, 7e-2][rank % 4])
  }

  // 5 elements: fewer than 16 per rank, so some shards are empty; 1037: shards with a vector body and a tail.
  @Test(arguments: [2, 3, 4], [5, 1037])
  func sumsAreTheRankOrderSumOnEveryRank(ranks: Int, count: Int) throws {
    let steps = 3
    let results = ResultSlots(count: ranks * steps)
    try ThreadGroup(size: ranks).run { communicator in
      let reducer = try #require(try SharedMemoryReducer.make(communicator: communicator, count: count))
      #expect(reducer.ownSlot.count == count)
      for step in 0..<steps {
        for element in 0..<count {
          reducer.ownSlot[element] = Self.value(rank: communicator.rank, element: element, step: step)
        }
        let sums = try reducer.finish(reducer.ownSlot)
        // Read before the next step's writes, with no extra barrier: Note [Shared slots need no third
        // synchronization] is what this loop relies on, as training does.
        results.set(communicator.rank * steps + step, sums.array)
      }
    }
    for step in 0..<steps {
      let expected = (0..<count).map { element in
        (1..<ranks).reduce(Self.value(rank: 0, element: element, step: step)) {
          $0 + Self.value(rank: $1, element: element, step: step)
        }
      }
      for rank in 0..<ranks {
        let got = results.values[rank * steps + step]
        #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "rank \(rank) step \(step)")
      }
    }
  }

  /// Two ranks: `SharedMemoryPairReducer`, each exchange alone and the two alternating in patterns that put every
  /// switch (sharded → streamed, streamed → sharded, streamed twice, sharded twice) between consecutive steps. Each
  /// rank writes its next step's gradients as soon as `finish` returns, while the other may still be reading:
  /// Note [One synchronization for a streamed step] is what keeps the sums right. `finish` and
  /// `finishLeavingParameterSum` (the addends added here) both.
  @Test(
    arguments: [[.sharded], [.streamed], [.sharded, .streamed], [.streamed, .streamed, .sharded, .sharded]]
      as [[SharedMemoryPairReducer.Exchange]], [5, 1037])
  func pairSumsAreTheRankOrderSumOnBothRanks(schedule: [SharedMemoryPairReducer.Exchange], count: Int) throws {
    let steps = 9
    let tail = 3
    let results = ResultSlots(count: 2 * steps)
    try ThreadGroup(size: 2).run { communicator in
      let reducer = try #require(
        try SharedMemoryPairReducer.make(communicator: communicator, count: count, schedule: schedule))
      let gradients = reducer.ownSlot
      for step in 0..<steps {
        for element in 0..<count {
          gradients[element] = Self.value(rank: communicator.rank, element: element, step: step)
        }
        var got: [Float]
        if step % 3 == 2 {
          let (sums, addends) = try reducer.finishLeavingParameterSum(gradients, parameterCount: count - tail)
          got = sums.array
          if let (first, second) = addends {
            for element in 0..<(count - tail) { got[element] = first[element] + second[element] }
          }
        } else {
          got = try reducer.finish(gradients).array
        }
        results.set(communicator.rank * steps + step, got)
      }
      #expect(reducer.steps.values.reduce(0, +) == steps)
      if schedule.count > 1 { #expect(reducer.steps[.sharded]! > 0 && reducer.steps[.streamed]! > 0) }
    }
    for step in 0..<steps {
      let expected = (0..<count).map {
        Self.value(rank: 0, element: $0, step: step) + Self.value(rank: 1, element: $0, step: step)
      }
      for rank in 0..<2 {
        let got = results.values[rank * steps + step]
        #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "rank \(rank) step \(step) \(schedule)")
      }
    }
  }

  @Test("every meeting leaves both ranks with the same exchange and round trip")
  func pairMeetingsAgree() throws {
    // Meetings alone, so that ranks leaving with different exchanges fail here rather than hang in the steps.
    let meetings = 5
    let choices = ResultSlots(count: 2)
    try ThreadGroup(size: 2).run { communicator in
      let reducer = try #require(try SharedMemoryPairReducer.make(communicator: communicator, count: 40))
      var seen: [Float] = []
      for _ in 0..<meetings {
        reducer.meet()
        seen += [reducer.exchange == .streamed ? 1 : 0, Float(reducer.lastRoundTripNanoseconds)]
      }
      choices.set(communicator.rank, seen)
    }
    #expect(choices.values[0].map(\.bitPattern) == choices.values[1].map(\.bitPattern))
    #expect(choices.values[0].enumerated().allSatisfy { $0.offset % 2 == 0 || $0.element > 0 })
  }

  @Test("steps between meetings run the exchange chosen there, the same on both ranks")
  func pairStepsFollowTheMeetings() throws {
    let choices = ResultSlots(count: 2)
    try ThreadGroup(size: 2).run { communicator in
      let reducer = try #require(try SharedMemoryPairReducer.make(communicator: communicator, count: 40))
      for _ in 0..<(2 * SharedMemoryPairReducer.meetingInterval + 1) {
        _ = try reducer.finish(reducer.ownSlot)
      }
      choices.set(
        communicator.rank,
        [Float(reducer.steps[.streamed]!), Float(reducer.steps[.sharded]!), Float(reducer.lastRoundTripNanoseconds)])
    }
    #expect(choices.values[0] == choices.values[1])
    #expect(choices.values[0][2] > 0)
  }

  @Test("the streamed copy is exact for every length and source alignment")
  func streamCopyIsExact() {
    let source = FloatBuffer(count: 1100)
    for element in 0..<source.count { source[element] = Self.value(rank: 2, element: element, step: 0) }
    let destination = FloatBuffer(count: 1100)
    for (offset, count) in [(0, 0), (0, 1), (1, 15), (3, 16), (5, 17), (7, 1037)] {
      destination.pointer.update(repeating: .nan, count: destination.count)
      Elementwise.streamCopy(source.pointer + offset, to: destination.pointer, count: count)
      #expect((0..<count).allSatisfy { destination[$0].bitPattern == source[offset + $0].bitPattern })
      #expect((count..<destination.count).allSatisfy { destination[$0].isNaN }, "wrote past \(count)")
    }
  }

  @Test("shards cover every element once, in cache-line-aligned pieces")
  func shardsPartitionTheBuffer() throws {
    for (ranks, count) in [(2, 235_149), (3, 1037), (4, 5), (16, 33)] {
      let shards = ResultSlots(count: ranks)
      try ThreadGroup(size: ranks).run { communicator in
        let reducer = try #require(try SharedMemoryReducer.make(communicator: communicator, count: count))
        shards.set(communicator.rank, [Float(reducer.shard.lowerBound), Float(reducer.shard.upperBound)])
      }
      let bounds = shards.values.map { (Int($0[0]), Int($0[1])) }
      #expect(bounds.first?.0 == 0 && bounds.last?.1 == count, "\(ranks) ranks, \(count)")
      for (left, right) in zip(bounds, bounds.dropFirst()) { #expect(left.1 == right.0) }
      for bound in bounds where bound.0 < count { #expect(bound.0 % 16 == 0) }
    }
  }

  @Test("the trainer sums through shared memory by default, through MPI's collectives when told not to")
  func trainerChoosesTheReducer() throws {
    // Two ranks get the pair reducer (one synchronization a step), more the sharded one.
    let data = try loadSmallData(smallConfiguration(batch: 8, steps: 1))
    for (option, expectShared) in [(true, true), (false, false)] {
      var settings = smallConfiguration(batch: 8, steps: 1)
      settings.sharedMemoryReduction = option
      let configuration = settings
      for ranks in [2, 3] {
        let kinds = ResultSlots(count: ranks)
        try ThreadGroup(size: ranks).run { communicator in
          let trainer = try Trainer(
            configuration: configuration, communicator: communicator, data: data, console: Console(enabled: false))
          let shared = ranks == 2 ? trainer.reducer is SharedMemoryPairReducer : trainer.reducer is SharedMemoryReducer
          kinds.set(communicator.rank, [shared ? 1 : 0])
        }
        #expect(
          kinds.values == Array(repeating: [expectShared ? 1 : 0], count: ranks),
          "option \(String(describing: option)), \(ranks) ranks")
      }
    }
  }

  @Test(
    "K thread-ranks through shared memory compute bit for bit what one process simulating K workers computes",
    arguments: [2, 3])
  func sharedMemoryEqualsSimulatedWorkers(ranks: Int) throws {
    var configuration = smallConfiguration(batch: 8, steps: 30)
    let data = try loadSmallData(configuration)
    let trained = try trainInThreads(ranks: ranks, configuration, data: data)
    configuration.simulateWorkers = ranks
    let simulated = try trainInThreads(ranks: 1, configuration, data: data)[0]
    for rank in 0..<ranks {
      #expect(trained[rank].map(\.bitPattern) == simulated.map(\.bitPattern), "rank \(rank)")
    }
  }
}
