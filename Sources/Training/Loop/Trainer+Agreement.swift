import Tensors

extension Trainer {
  /// Checks, with one all-gather, that every rank runs with the same settings and loaded the same data. Every
  /// rank is meant to get the same options (docs/INTERFACE.md), but hosts can differ in their files or binaries,
  /// and `mpirun -np 1 a : -np 1 b` can differ in anything. A mismatch is an input error (exit 2) naming the
  /// settings and the ranks that differ from rank 0.
  func verifyRanksShareConfiguration() throws {
    guard communicator.size > 1 else { return }
    let fields = configurationFingerprints()
    var mine = [UInt64(fields.count)] + fields.map(\.hash)
    let bytes = mine.withUnsafeMutableBytes { Array($0) }
    let gathered = try communicator.allGather(bytes)
    let perRank = bytes.count
    let reference = Array(gathered[0..<perRank])
    var differences: [String: [Int]] = [:]
    for rank in 1..<communicator.size {
      let theirs = Array(gathered[(rank * perRank)..<((rank + 1) * perRank)])
      guard theirs != reference else { continue }
      let values = theirs.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
      if values[0] != UInt64(fields.count) {
        differences["the ddp-train build (another binary or version)", default: []].append(rank)
        continue
      }
      for (index, field) in fields.enumerated() where values[index + 1] != field.hash {
        differences[field.name, default: []].append(rank)
      }
    }
    mine.removeAll()
    guard !differences.isEmpty else { return }
    guard communicator.isCoordinator else { throw PeerFailure(rank: 0, exitCode: 2) }
    let list = differences.keys.sorted().map { name in
      "\(name) on rank\(differences[name]!.count > 1 ? "s" : "") \(differences[name]!.map(String.init).joined(separator: ", "))"
    }
    throw ConfigurationError(
      option: differences.keys.sorted().joined(separator: ", "),
      expected: "the same settings and data on every rank",
      found: "differences from rank 0: " + list.joined(separator: "; "),
      hint: "Give every rank the same options and config file, and the same data files on every host.")
  }

  /// One hash per setting, named as its option (`TrainOption.all`), plus one for the training data. Output
  /// locations are used by rank 0 alone (other ranks never open them), so they may differ.
  func configurationFingerprints() -> [(name: String, hash: UInt64)] {
    var fields = TrainOption.all.filter { !$0.rankZeroOnly }.map { option in
      (option.flag, FNV1a64.hash(Array((option.value(in: configuration) ?? "unset").utf8)))
    }
    fields.append(("the training data (\(data.source))", trainFingerprint))
    return fields
  }

  /// Compares a hash of every rank's parameters (one 8-byte all-gather). Rank 0 reports a mismatch; the
  /// other ranks, which see the same hashes, end silently with it.
  func verifyRanksAgree() throws {
    guard communicator.size > 1 else { return }
    var hash = FNV1a64()
    model.parameters.pointer.withMemoryRebound(to: UInt32.self, capacity: model.parameterCount) {
      hash.combine(words: UnsafeBufferPointer(start: $0, count: model.parameterCount))
    }
    // The batch norms' running statistics and counts too (Note [Running statistics]).
    model.buffers.pointer.withMemoryRebound(to: UInt32.self, capacity: model.bufferCount) {
      hash.combine(words: UnsafeBufferPointer(start: $0, count: model.bufferCount))
    }
    let counts = model.batchesTracked.flatMap {
      [UInt32(truncatingIfNeeded: $0), UInt32(truncatingIfNeeded: $0 >> 32)]
    }
    counts.withUnsafeBufferPointer { hash.combine(words: $0) }
    let mine = withUnsafeBytes(of: hash.value.littleEndian) { Array($0) }
    watchdog?.beat(step: step, phase: .collective("parameter consistency check"))
    let all = try communicator.allGather(mine)
    let hashes = stride(from: 0, to: all.count, by: 8).map { Array(all[$0..<($0 + 8)]) }
    let differing = hashes.indices.filter { hashes[$0] != hashes[0] }
    guard differing.isEmpty else {
      if communicator.isCoordinator { throw ConsistencyError(step: step, differingRanks: differing) }
      throw PeerFailure(rank: 0, exitCode: 1)
    }
  }
}
