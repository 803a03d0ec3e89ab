import CKernels
import Checkpoints
import Communication
import Foundation
import Tensors
import Testing

@testable import GradientExchange
@testable import Training

/// `HierarchicalReducer` and `PeerExchange` over thread-ranks that pretend to run on several hosts: the sums
/// against naive references computed here, element by element, and training across pretend hosts against one
/// rank with the global batch.
@Suite struct HierarchicalReducerTests {
  static func value(rank: Int, element: Int, step: Int) -> Float {
    var generator = Xoshiro256(seed: UInt64(1000 * step + rank), stream: UInt64(element))
    return generator.nextFloat(in: -1, 1) * Float([1, 1e-3, 3e2, 7e-2, 5, 2e-2][rank % 6])
  }

  /// bfloat16 by another route than the kernel's bit trick: the two neighbours (truncated, and one unit up),
  /// whichever is nearer, the even one on a tie; never infinity for a finite value (the wire saturates).
  static func referenceBF16(_ x: Float) -> Float {
    let bits = x.bitPattern
    let down = Float(bitPattern: bits & 0xffff_0000)
    let up = Float(bitPattern: (bits & 0xffff_0000) &+ 0x1_0000)
    let toDown = abs(Double(x) - Double(down))
    let toUp = up.isInfinite ? Double.infinity : abs(Double(up) - Double(x))
    if toDown != toUp { return toDown < toUp ? down : up }
    return (bits >> 16) & 1 == 0 ? down : up
  }

  /// The world's ranks, host by host: ranks/hosts per host, in rank order.
  static func hostsOf(ranks: Int, perHost: Int) -> [Int] { (0..<ranks).map { $0 / perHost } }

  /// The two-level reducer for the pretend hosts of `communicator` (a thread-rank of a `ThreadGroup` with hosts).
  static func reducer(
    _ communicator: Communicator, count: Int, parameterCount: Int, compression: GradientCompression, overlaps: Bool,
    bucketElements: Int = OverlappingReducer.defaultBucketElements
  ) throws -> HierarchicalReducer {
    guard case .hosts(let layout) = try HierarchicalReducer.layout(of: communicator) else {
      throw CommunicationError(operation: "layout", message: "expected several hosts")
    }
    return try #require(
      try HierarchicalReducer.make(
        layout: layout, count: count, parameterCount: parameterCount, compression: compression, overlaps: overlaps,
        bucketElements: bucketElements))
  }

  // 3 hosts × 2 ranks and 2 hosts × 3; with and without overlap (the ranges as the backward would report them).
  @Test(arguments: [(6, 2), (6, 3), (2, 1)], [false, true])
  func sumsAreHostSumsThenPeerSums(layout: (Int, Int), overlaps: Bool) throws {
    let (ranks, perHost) = layout
    let parameterCount = 1030
    let count = parameterCount + 7
    let steps = 2
    let results = ResultSlots(count: ranks * steps + 1)
    try ThreadGroup(size: ranks, hosts: Self.hostsOf(ranks: ranks, perHost: perHost)).run { communicator in
      let reducer = try Self.reducer(
        communicator, count: count, parameterCount: parameterCount, compression: .none, overlaps: overlaps,
        bucketElements: 300)
      if communicator.rank == 0 { results.setName(reducer.name) }
      for step in 0..<steps {
        for element in 0..<count {
          reducer.ownSlot[element] = Self.value(rank: communicator.rank, element: element, step: step)
        }
        if overlaps {
          for range in [900..<1030, 610..<900, 200..<610, 0..<200] { reducer.gradientsReady(range) }
        }
        results.set(communicator.rank * steps + step, try reducer.finish(reducer.ownSlot).array)
      }
    }
    let hosts = ranks / perHost
    for step in 0..<steps {
      let expected = (0..<count).map { element in
        // Within each host in rank order, then the host sums in host order (the thread group's all-reduce).
        let hostSums = (0..<hosts).map { host in
          (1..<perHost).reduce(Self.value(rank: host * perHost, element: element, step: step)) {
            $0 + Self.value(rank: host * perHost + $1, element: element, step: step)
          }
        }
        return hostSums.dropFirst().reduce(hostSums[0], +)
      }
      let expectedBits: [UInt32] = expected.map(\.bitPattern)
      for rank in 0..<ranks {
        let got: [UInt32] = results.values[rank * steps + step].map(\.bitPattern)
        #expect(got == expectedBits, "rank \(rank) step \(step)")
      }
    }
    let name = results.name
    let prefix: String =
      perHost == 1
      ? "MPI across \(hosts) hosts × 1 rank"
      : "shared memory within \(hosts) hosts × \(perHost) ranks, MPI across hosts"
    #expect(name.hasPrefix(prefix))
    let saysOverlap = name.contains("overlapping")
    #expect(saysOverlap == overlaps)
  }

  @Test("bf16 on the wire: the first step is the rounded sum of the rounded values; error feedback loses nothing")
  func bf16WithErrorFeedback() throws {
    let parameterCount = 999
    let count = parameterCount + 3
    let steps = 4
    let ranks = 3
    let results = ResultSlots(count: ranks * (steps + 2))
    try ThreadGroup(size: ranks, hosts: [0, 1, 2]).run { communicator in
      let reducer = try Self.reducer(
        communicator, count: count, parameterCount: parameterCount, compression: .bf16, overlaps: false)
      for step in 0..<steps {
        for element in 0..<count {
          reducer.ownSlot[element] = Self.value(rank: communicator.rank, element: element, step: step)
        }
        results.set(communicator.rank * (steps + 2) + step, try reducer.finish(reducer.ownSlot).array)
      }
      // Bytes sent per step: every value of the 999 but this rank's own third goes out once in each phase, as 16
      // bits (chunks of 333), plus the fp32 all-reduce of the 3-value tail (its ring estimate, 4·3·2·2/3 = 16).
      if communicator.rank == 0 { results.setName("\(reducer.bytesSentLastStep)") }
      results.set(communicator.rank * (steps + 2) + steps, reducer.exchange.sendResidual!.array)
      results.set(communicator.rank * (steps + 2) + steps + 1, reducer.exchange.ownerResidual!.array)
    }
    let all = results.values
    #expect(results.name == "\(2 * 333 * 2 * 2 + 16)")
    // Every rank decoded the same bits.
    for step in 0..<steps {
      for rank in 1..<ranks {
        #expect(all[rank * (steps + 2) + step].map(\.bitPattern) == all[step].map(\.bitPattern))
      }
    }
    // Step 0: each value rounded to bf16, summed in fp32 in peer order, the sum rounded to bf16.
    for element in 0..<parameterCount {
      let rounded = (0..<ranks).map { Self.referenceBF16(Self.value(rank: $0, element: element, step: 0)) }
      let expected = Self.referenceBF16(rounded.dropFirst().reduce(rounded[0], +))
      #expect(all[0][element].bitPattern == expected.bitPattern, "element \(element)")
    }
    // The scalar tail is never compressed: the exact fp32 sum.
    for element in parameterCount..<count {
      let exact = (1..<ranks).reduce(Self.value(rank: 0, element: element, step: 0)) {
        $0 + Self.value(rank: $1, element: element, step: 0)
      }
      #expect(all[0][element] == exact)
    }
    // Error feedback: what was delivered over the steps plus what the residuals hold is what was sent, so no
    // gradient is lost, only delayed (to fp32 rounding of the bookkeeping).
    var worst = 0.0
    for element in 0..<parameterCount {
      var sent = 0.0
      var magnitude = 0.0
      var delivered = 0.0
      for step in 0..<steps {
        for rank in 0..<ranks {
          sent += Double(Self.value(rank: rank, element: element, step: step))
          magnitude += abs(Double(Self.value(rank: rank, element: element, step: step)))
        }
        delivered += Double(all[step][element])
      }
      var held = 0.0
      for rank in 0..<ranks {
        held += Double(all[rank * (steps + 2) + steps][element]) + Double(all[rank * (steps + 2) + steps + 1][element])
      }
      worst = max(worst, abs(delivered + held - sent) / magnitude)
    }
    #expect(worst < 1e-5, "delivered + residuals differ from what was sent by \(worst)")
  }

  /// A step whose backward reports no ranges (a noise-scale step) sends the parameters as one piece; the steps
  /// around it send buckets, the last of which starts where that piece did. Each must travel at its own size.
  @Test("bf16 with overlap: every bucket sends its own bytes, also after a step that sent the buffer whole")
  func bucketsSendTheirOwnBytes() throws {
    let parameterCount = 1030
    let count = parameterCount + 7
    let results = ResultSlots(count: 4)
    try ThreadGroup(size: 2, hosts: [0, 1]).run { communicator in
      let reducer = try Self.reducer(
        communicator, count: count, parameterCount: parameterCount, compression: .bf16, overlaps: true,
        bucketElements: 300)
      var bytes: [Float] = []
      for step in 0..<3 {
        for element in 0..<count {
          reducer.ownSlot[element] = Self.value(rank: communicator.rank, element: element, step: step)
        }
        if step != 1 {
          for range in [900..<1030, 610..<900, 200..<610, 0..<200] { reducer.gradientsReady(range) }
        }
        let sums = try reducer.finish(reducer.ownSlot).array
        bytes.append(Float(reducer.bytesSentLastStep))
        if step == 2 { results.set(2 + communicator.rank, sums) }
      }
      results.set(communicator.rank, bytes)
    }
    // Buckets 610..<1030, 200..<610 and 0..<200: chunks of 210, 205 and 100 values, each sent once in each phase
    // as 16 bits; or the whole 1030 in chunks of 515. Plus the fp32 tail's ring estimate, 4·7·2·1/2 = 28.
    let buckets = Float(2 * 2 * (210 + 205 + 100) + 28)
    let whole = Float(2 * 2 * 515 + 28)
    for rank in 0..<2 { #expect(results.values[rank] == [buckets, whole, buckets], "rank \(rank)") }
    // The sums are still the sums: to bf16 rounding, plus what the error feedback carried over from earlier steps
    // (a few bf16 units of those steps' values).
    #expect(results.values[2].map(\.bitPattern) == results.values[3].map(\.bitPattern))
    for element in 0..<parameterCount {
      let exact = Self.value(rank: 0, element: element, step: 2) + Self.value(rank: 1, element: element, step: 2)
      let scale = (0..<3).reduce(Float(0)) { total, step in
        total + abs(Self.value(rank: 0, element: element, step: step))
          + abs(Self.value(rank: 1, element: element, step: step))
      }
      #expect(abs(results.values[2][element] - exact) <= scale / 64, "element \(element)")
    }
  }

  @Test("fp16 on the wire: a value past half precision's range is sent as ±65504, the rest kept")
  func fp16Saturates() {
    var out: [UInt16] = [0, 0, 0]
    var residual: [Float] = [0, 0, 0]
    let values: [Float] = [1e5, -70000, 1.5]
    ddp_encode_fp16(&out, values, &residual, 3)
    let sent: [UInt16] = [Float16(65504).bitPattern, Float16(-65504).bitPattern, Float16(1.5).bitPattern]
    let kept: [Float] = [100_000 - 65504, -70000 + 65504, 0]
    #expect(out == sent)
    #expect(residual == kept)
  }

  @Test("bf16 kernel rounds like the reference on awkward values (ties, NaN, near the largest float)")
  func bf16Kernel() {
    let values: [Float] = [
      1, 1 + 1.0 / 256, 1 + 3.0 / 256, -2.0078125, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 1e-40,
      3.14159265,
    ]
    var out = [UInt16](repeating: 0, count: values.count)
    var residual = [Float](repeating: 0, count: values.count)
    ddp_encode_bf16(&out, values, &residual, values.count)
    for (index, value) in values.enumerated() {
      let decoded: Float = Float(bitPattern: UInt32(out[index]) << 16)
      let expected: Float = Self.referenceBF16(value)
      #expect(decoded.bitPattern == expected.bitPattern)
    }
    var nan: [UInt16] = [0]
    var zero: [Float] = [0]
    ddp_encode_bf16(&nan, [Float.nan], &zero, 1)
    let decodedNaN: Float = Float(bitPattern: UInt32(nan[0]) << 16)
    #expect(decodedNaN.isNaN)
  }

  @Test(
    "one step across pretend hosts from a common state equals one step of one rank with the global batch (1e-5); unequal hosts fall back"
  )
  func trainingAcrossHosts() throws {
    let reference = smallConfiguration(batch: 32, steps: 40)
    let data = try loadSmallData(reference)
    let one = try trainInThreads(ranks: 1, reference, data: data)[0]
    var split = reference
    split.batchSize = 8
    split.overlapAcrossHosts = false
    var name = ""
    let four = try trainInThreads(ranks: 4, hosts: [0, 0, 1, 1], split, data: data) { name = $0 }
    #expect(name == "shared memory within 2 hosts × 2 ranks, MPI across hosts")
    for rank in 1..<4 { #expect(four[rank].map(\.bitPattern) == four[0].map(\.bitPattern)) }
    // Against one rank, one step at a time from a common state (whole runs part by rounding in jumps,
    // `CommonState`): at step 20 of a constant schedule.
    var constant = reference
    constant.schedule = .constant
    var constantSplit = split
    constantSplit.schedule = .constant
    let common = try CommonState.make(at: 20, constant, data: data)
    defer { try? FileManager.default.removeItem(at: common.directory) }
    let oneStep = try CommonState.oneStep(from: common.directory, at: 20, ranks: 1, constant, data: data)[0]
    let hostsStep = try CommonState.oneStep(
      from: common.directory, at: 20, ranks: 4, hosts: [0, 0, 1, 1], constantSplit, data: data)
    for rank in 1..<4 { #expect(hostsStep[rank].map(\.bitPattern) == hostsStep[0].map(\.bitPattern)) }
    CommonState.expectSameStep(hostsStep[0], oneStep, from: common.parameters, "step 20")
    // Overlapped, as fp32 across hosts is by default: the same additions, so the same bits.
    var overlapped = split
    overlapped.overlapAcrossHosts = nil
    var overlappedName = ""
    let overlapping = try trainInThreads(ranks: 4, hosts: [0, 0, 1, 1], overlapped, data: data) {
      overlappedName = $0
    }
    #expect(overlappedName == "shared memory within 2 hosts × 2 ranks, MPI across hosts, overlapping the backward")
    #expect(overlapping[0].map(\.bitPattern) == four[0].map(\.bitPattern))
    // bf16 across hosts: close to fp32 after 40 steps, not equal (it does round); by default not overlapped.
    var compressed = split
    compressed.overlapAcrossHosts = nil
    compressed.compress = .bf16
    var compressedName = ""
    let rounded = try trainInThreads(ranks: 4, hosts: [0, 0, 1, 1], compressed, data: data) { compressedName = $0 }[0]
    #expect(
      compressedName
        == "shared memory within 2 hosts × 2 ranks, MPI across hosts, bf16 across hosts with error feedback")
    let gap = maxRelativeDifference(rounded, one)
    #expect(gap > 0 && gap < 0.05, "bf16 vs fp32: \(gap)")
    // 2 + 1 ranks: the flat all-reduce, saying why.
    var three = reference
    three.maxSteps = 10
    _ = try trainInThreads(ranks: 3, hosts: [0, 0, 1], three, data: data) { name = $0 }
    #expect(name.hasPrefix("MPI all-reduce (hosts run 2, 1 ranks"), "\(name)")
  }

  @Test("a compressed run across hosts resumes bitwise: the checkpoint holds every rank's error-feedback residuals")
  func compressedResumeIsBitwise() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ddp-ef-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    // 2 pretend hosts × 2 ranks, B = 8: 32 steps an epoch; the checkpoint at 37 is mid-epoch 1.
    var full = smallConfiguration(batch: 8, steps: 60)
    full.compress = .bf16
    full.checkpointDirectory = directory.path
    full.checkpointEvery = 37
    let data = try loadSmallData(full)
    let hosts = [0, 0, 1, 1]
    let uninterrupted = try trainInThreads(ranks: 4, hosts: hosts, full, data: data)[0]
    let saved = directory.appendingPathComponent("step-00000037/\(CheckpointDirectory.reducerStateFile)")
    let file = try SafeTensors.decode(Array(try Data(contentsOf: saved)), path: saved.path)
    #expect(file.metadata["ddp_train.reducer_state"]?.hasPrefix("bf16 error feedback over 2 hosts × 2 ranks") == true)
    #expect(file.tensors.map(\.name) == ["send_residual", "owner_residual"])
    // Not all zero: rounding to bf16 left something behind on every rank.
    for tensor in file.tensors {
      let row = tensor.shape[1]
      for rank in 0..<4 { #expect(tensor.values[(rank * row)..<((rank + 1) * row)].contains { $0 != 0 }) }
    }

    // As if the run had been killed after writing step 37.
    try FileManager.default.removeItem(at: directory.appendingPathComponent("step-00000060"))
    var again = full
    again.resume = true
    let resumed = try trainInThreads(ranks: 4, hosts: hosts, again, data: data)[0]
    #expect(resumed.map(\.bitPattern) == uninterrupted.map(\.bitPattern))

    // Another layout (4 hosts × 1 rank) cannot use them: it starts from zero and still trains on.
    try FileManager.default.removeItem(at: directory.appendingPathComponent("step-00000060"))
    let elsewhere = try trainInThreads(ranks: 4, hosts: [0, 1, 2, 3], again, data: data)[0]
    let gap = maxRelativeDifference(elsewhere, uninterrupted)
    #expect(gap > 0 && gap < 0.05, "\(gap)")

    // A damaged residual file fails the checkpoint's verification like any of its files (the only one left here).
    try FileManager.default.removeItem(at: directory.appendingPathComponent("step-00000060"))
    var bytes = Array(try Data(contentsOf: saved))
    bytes[bytes.count - 1] ^= 1
    try Data(bytes).write(to: saved)
    #expect {
      _ = try trainInThreads(ranks: 4, hosts: hosts, again, data: data)
    } throws: { error in
      "\(error)".contains("reducer-state.safetensors") && "\(error)".contains("SHA-256")
    }
  }

  @Test("split groups ranks by color, ordered by key")
  func threadGroupSplit() throws {
    let results = ResultSlots(count: 6)
    try ThreadGroup(size: 6).run { communicator in
      let part = try communicator.split(color: communicator.rank % 2, key: -communicator.rank)
      var values: [Float] = [Float(communicator.rank)]
      try part.allReduceSum(&values)
      results.set(communicator.rank, [Float(part.rank), Float(part.size), values[0]])
    }
    // Colors 0 = {0, 2, 4}, 1 = {1, 3, 5}; key −rank puts the highest rank first.
    #expect(results.values[4] == [0, 3, 6])
    #expect(results.values[0] == [2, 3, 6])
    #expect(results.values[5] == [0, 3, 9])
  }
}
