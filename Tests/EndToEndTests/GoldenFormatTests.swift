import Foundation
import TestSupport
import Testing

/// The formats outside tools rely on, pinned byte for byte against files in `Golden/`: a checkpoint's `state.json`,
/// the safetensors headers (tensor names, dtypes, shapes, offsets and `__metadata__`), the metrics events and the run
/// header a user sees. What depends on floating-point arithmetic (losses, accuracies, timings, digests) is replaced
/// by a placeholder before comparing, so the files pin keys, types, order and every exact value (steps, learning
/// rates, shapes, names) on any CPU; the arithmetic itself is pinned by the bitwise tests. Values summed through a
/// GEMM's floating-point reduction (the gradient noise scale's sums of squares) differ in their last bits between
/// OpenBLAS kernel families: those are compared with a stated relative tolerance (`toleratedKeys`) against the value
/// the golden file holds. The console's `blas:` line names the CPU and kernels, so it is normalised whole.
///
/// After a deliberate format change, regenerate with `DDP_TRAIN_UPDATE_GOLDEN=1 swift test --filter GoldenFormat`
/// and review the diff: it is the change users will see.
@Suite(.serialized) struct GoldenFormatTests {
  static let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Golden")
  static let updating = ProcessInfo.processInfo.environment["DDP_TRAIN_UPDATE_GOLDEN"] == "1"

  static let tinyRun = [
    "--dataset", "synthetic", "--synthetic-train", "512", "--synthetic-test", "128", "--model", "mlp:16",
    "--batch-size", "32", "--max-steps", "20", "--checkpoint-dir", "ck", "--checkpoint-every", "10",
    "--metrics", "metrics.jsonl", "--log-every", "5",
  ]

  @Test func singleProcessRunFormats() throws {
    let scratch = try makeScratchDirectory("golden")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let result = try DDPTrainProcess.run(Self.tinyRun, timeout: 60, directory: scratch)
    #expect(result.status == 0, "\(result.output)")
    let checkpoint = scratch.appendingPathComponent("ck/step-00000020")
    try compare("state.json", Self.normalizedJSON(file: checkpoint.appendingPathComponent("state.json")))
    try compare(
      "model.safetensors-header.json", Self.safetensorsHeader(checkpoint.appendingPathComponent("model.safetensors")))
    try compare(
      "optimizer.safetensors-header.json",
      Self.safetensorsHeader(checkpoint.appendingPathComponent("optimizer.safetensors")))
    try compareLines("metrics.jsonl", file: scratch.appendingPathComponent("metrics.jsonl"))
    try compare("run-output.txt", Self.normalizedConsole(result.stdout))
  }

  /// A convolutional network's checkpoint: the `torch.nn.Sequential` expression, input shape and tensor layout.
  @Test func convolutionalCheckpointHeader() throws {
    let scratch = try makeScratchDirectory("golden-cnn")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let result = try DDPTrainProcess.run(
      [
        "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--model",
        "seq:conv4k3p1,relu,pool2,flatten,linear10", "--batch-size", "16", "--max-steps", "2", "--checkpoint-dir", "ck",
      ], timeout: 60, directory: scratch)
    #expect(result.status == 0, "\(result.output)")
    try compare(
      "cnn-model.safetensors-header.json",
      Self.safetensorsHeader(scratch.appendingPathComponent("ck/step-00000002/model.safetensors")))
  }

  /// A checkpoint with batch norms and a residual block: BatchNorm2d and BatchNorm1d and `Residual(...)` in the
  /// expression, the block's class in `ddp_train.modules`, nested names (`4.body.0.weight`,
  /// `4.shortcut.1.running_mean`), buffers in state_dict order, num_batches_tracked as an I64 scalar.
  @Test func batchNormCheckpointHeader() throws {
    let scratch = try makeScratchDirectory("golden-bn")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let result = try DDPTrainProcess.run(
      [
        "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--model",
        "seq:conv4k3p1,bn,relu,res(conv8k3s2p1,bn,relu,conv8k3p1,bn),relu,pool2,flatten,linear8,bn,relu,linear10",
        "--batch-size", "16", "--max-steps", "2",
        "--checkpoint-dir", "ck",
      ], timeout: 60, directory: scratch)
    #expect(result.status == 0, "\(result.output)")
    try compare(
      "bn-model.safetensors-header.json",
      Self.safetensorsHeader(scratch.appendingPathComponent("ck/step-00000002/model.safetensors")))
  }

  /// The header of a two-rank job under real mpirun: world, reduction and per-rank lines.
  @Test(.enabled(if: DDPTrainProcess.mpirunAvailable)) func twoRankRunHeader() throws {
    let scratch = try makeScratchDirectory("golden-mpi")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let result = try DDPTrainProcess.mpirun(
      ranks: 2,
      [
        "--dataset", "synthetic", "--synthetic-train", "512", "--synthetic-test", "128", "--model", "mlp:16",
        "--batch-size", "16", "--max-steps", "4", "--metrics", "metrics.jsonl",
      ], timeout: 60, directory: scratch)
    #expect(result.status == 0, "\(result.output)")
    try compare("two-rank-output.txt", Self.normalizedConsole(result.stdout))
    try compareLines("two-rank-metrics.jsonl", file: scratch.appendingPathComponent("metrics.jsonl"))
  }

  // MARK: - Comparing

  /// `expected`: the golden file's text, normalised like `actual` where it keeps measured values (JSON Lines).
  func compare(
    _ name: String, _ actual: String, expected: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    let url = Self.goldenDirectory.appendingPathComponent(name)
    if Self.updating {
      try FileManager.default.createDirectory(at: Self.goldenDirectory, withIntermediateDirectories: true)
      try actual.write(to: url, atomically: true, encoding: .utf8)
      return
    }
    let expected = try expected ?? String(contentsOf: url, encoding: .utf8)
    #expect(
      actual == expected,
      "\(name) differs from Golden/\(name):\n\(Self.firstDifference(expected, actual))",
      sourceLocation: sourceLocation)
  }

  /// A JSON Lines file: its normalised lines against the golden file's, then each value of `toleratedKeys`, line by
  /// line and in order, against the golden file's value within that key's relative tolerance.
  func compareLines(_ name: String, file: URL, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let actual = try String(contentsOf: file, encoding: .utf8)
    if Self.updating {
      try compare(name, Self.normalizedLines(actual, keepingToleratedValues: true))
      return
    }
    let expected = try String(contentsOf: Self.goldenDirectory.appendingPathComponent(name), encoding: .utf8)
    try compare(
      name, Self.normalizedLines(actual), expected: Self.normalizedLines(expected), sourceLocation: sourceLocation)
    let measured = try Self.toleratedValues(actual)
    let golden = try Self.toleratedValues(expected)
    #expect(
      measured.map(\.key) == golden.map(\.key), "\(name): the tolerated keys differ", sourceLocation: sourceLocation)
    for (now, then) in zip(measured, golden) where now.key == then.key {
      let tolerance = Self.toleratedKeys[now.key]!
      let distance = abs(now.value - then.value) / max(abs(then.value), 1e-30)
      #expect(
        distance <= tolerance,
        "\(name): \(now.key) \(now.value) against the golden \(then.value) (relative \(distance) > \(tolerance))",
        sourceLocation: sourceLocation)
    }
  }

  static func firstDifference(_ expected: String, _ actual: String) -> String {
    let a = expected.split(separator: "\n", omittingEmptySubsequences: false)
    let b = actual.split(separator: "\n", omittingEmptySubsequences: false)
    for index in 0..<max(a.count, b.count) {
      let left = index < a.count ? String(a[index]) : "<end>"
      let right = index < b.count ? String(b[index]) : "<end>"
      if left != right { return "line \(index + 1):\n  golden: \(left)\n  now:    \(right)" }
    }
    return "(no line differs)"
  }

  // MARK: - Normalizing what arithmetic decides

  /// Keys whose values come from floating-point arithmetic or the clock.
  static let measuredKeys: Set<String> = [
    "loss", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "accuracy", "elapsed_s", "epoch_s",
    "samples_per_sec", "host_steal", "time_allreduce_s", "time_compute_s", "time_data_s", "time_other_s",
    "epoch_loss_sum",
    "epoch_correct", "seconds", "wall_s", "grad_norm", "weight_norm",
  ]

  /// Keys whose values are sums through a GEMM's reduction, and the relative distance allowed from the golden
  /// value: measured 8e-8 between the sums of squares (grad_sq) of Zen and Haswell kernels; the noise scale, a
  /// quotient of their difference, 5e-7.
  static let toleratedKeys: [String: Double] = ["grad_sq_big": 1e-5, "grad_sq_small": 1e-5, "noise_scale": 1e-4]

  /// Every number under a key of `toleratedKeys`, line by line in file order (keys sorted within a line).
  static func toleratedValues(_ text: String) throws -> [(key: String, value: Double)] {
    try text.split(separator: "\n").flatMap { line -> [(key: String, value: Double)] in
      let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
      return object.keys.sorted().compactMap { key in
        guard toleratedKeys[key] != nil, let number = object[key] as? NSNumber else { return nil }
        return (key, number.doubleValue)
      }
    }
  }

  static func normalize(_ value: Any, key: String?, keepingToleratedValues: Bool = false) -> Any {
    switch value {
    case let object as [String: Any]:
      return object.reduce(into: [String: Any]()) {
        $0[$1.key] = normalize($1.value, key: $1.key, keepingToleratedValues: keepingToleratedValues)
      }
    case let array as [Any]:
      return array.map { normalize($0, key: key, keepingToleratedValues: keepingToleratedValues) }
    case let string as String:
      // SHA-256 digests of files whose bytes are floats.
      if string.count == 64, string.allSatisfy(\.isHexDigit) { return "<sha256>" }
      return string
    default:
      if let key, measuredKeys.contains(key) || key.hasPrefix("time_") { return "<measured>" }
      if let key, toleratedKeys[key] != nil, !keepingToleratedValues { return "<within tolerance>" }
      return value
    }
  }

  static func render(_ value: Any) throws -> String {
    let data = try JSONSerialization.data(
      withJSONObject: value, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self)
  }

  static func normalizedJSON(file: URL) throws -> String {
    let object = try JSONSerialization.jsonObject(with: Data(contentsOf: file))
    return try render(normalize(object, key: nil)) + "\n"
  }

  /// One normalized, key-sorted JSON object per line, in file order.
  /// `keepingToleratedValues`: keep the numbers of `toleratedKeys` (what the golden file holds).
  static func normalizedLines(_ text: String, keepingToleratedValues: Bool = false) throws -> String {
    try text.split(separator: "\n").map { line in
      let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
      let normalized = normalize(object, key: nil, keepingToleratedValues: keepingToleratedValues)
      let data = try JSONSerialization.data(
        withJSONObject: normalized, options: [.sortedKeys, .withoutEscapingSlashes])
      return String(decoding: data, as: UTF8.self)
    }.joined(separator: "\n") + "\n"
  }

  /// The JSON header of a safetensors file (names, dtypes, shapes, offsets, `__metadata__`), key-sorted.
  static func safetensorsHeader(_ file: URL) throws -> String {
    let bytes = [UInt8](try Data(contentsOf: file))
    var length = 0
    for index in (0..<8).reversed() { length = length << 8 | Int(bytes[index]) }
    let object = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + length)]))
    return try render(object) + "\n"
  }

  /// The console output with the BLAS kernel's name and every measured number replaced: the header's wording,
  /// its exact settings (batch, steps, lr policy) and the shape of the progress lines stay pinned.
  static func normalizedConsole(_ text: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).compactMap { line -> String? in
      var line = String(line)
      // The kernels, why they run, and a note when they are narrower than the CPU runs, depend on the machine.
      if line.hasPrefix("  blas:") {
        return line.replacingOccurrences(
          of: #"^  blas:  .*(, [0-9]+ threads? per rank)$"#, with: "  blas:  <kernels>$1", options: .regularExpression)
      }
      if line.hasPrefix("  note:  ") && line.contains("kernels") { return nil }
      if line.hasPrefix("epoch") || line.hasPrefix("done:") {
        line = line.replacingOccurrences(
          of: #"(loss|acc|accuracy) [0-9.]+"#, with: "$1 <x>", options: .regularExpression)
        line = line.replacingOccurrences(
          of: #"[0-9.]+ (samples/s|s elapsed|s;)"#, with: "<t> $1", options: .regularExpression)
        line = line.replacingOccurrences(of: #"ETA [0-9hms]+"#, with: "ETA <t>", options: .regularExpression)
        line = line.replacingOccurrences(of: #"steal [0-9.]+%"#, with: "steal <x>%", options: .regularExpression)
        line = line.replacingOccurrences(of: #" +"#, with: " ", options: .regularExpression)
      }
      return line
    }.joined(separator: "\n")
  }
}
