import Communication
import Foundation
import Tensors
import Testing

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
    let data = try loadSmallData(smallConfiguration(batch: 8, steps: 1))
    for (option, expectShared) in [(true, true), (false, false)] {
      var settings = smallConfiguration(batch: 8, steps: 1)
      settings.sharedMemoryReduction = option
      let configuration = settings
      let kinds = ResultSlots(count: 2)
      try ThreadGroup(size: 2).run { communicator in
        let trainer = try Trainer(
          configuration: configuration, communicator: communicator, data: data, console: Console(enabled: false))
        kinds.set(communicator.rank, [trainer.reducer is SharedMemoryReducer ? 1 : 0])
      }
      #expect(kinds.values == [[expectShared ? 1 : 0], [expectShared ? 1 : 0]], "option \(String(describing: option))")
    }
  }

  @Test("K thread-ranks through shared memory compute bit for bit what one process simulating K workers computes")
  func sharedMemoryEqualsSimulatedWorkers() throws {
    var configuration = smallConfiguration(batch: 8, steps: 30)
    let data = try loadSmallData(configuration)
    let three = try trainInThreads(ranks: 3, configuration, data: data)
    configuration.simulateWorkers = 3
    let simulated = try trainInThreads(ranks: 1, configuration, data: data)[0]
    for rank in 0..<3 { #expect(three[rank].map(\.bitPattern) == simulated.map(\.bitPattern), "rank \(rank)") }
  }
}
