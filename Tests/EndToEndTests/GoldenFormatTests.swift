import Foundation
import TestSupport
import Testing

/// The formats outside tools rely on, pinned byte for byte against files in `Golden/`: a checkpoint's `state.json`,
/// the safetensors headers (tensor names, dtypes, shapes, offsets and `__metadata__`), the metrics events and the run
/// header a user sees. What depends on floating-point arithmetic (losses, accuracies, timings, digests) is replaced
/// by a placeholder before comparing, so the files pin keys, types, order and every exact value (steps, learning
/// rates, shapes, names) on any CPU; the arithmetic itself is pinned by the bitwise tests.
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
    try compare("metrics.jsonl", Self.normalizedLines(file: scratch.appendingPathComponent("metrics.jsonl")))
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
    try compare("two-rank-metrics.jsonl", Self.normalizedLines(file: scratch.appendingPathComponent("metrics.jsonl")))
  }

  // MARK: - Comparing

  func compare(_ name: String, _ actual: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let url = Self.goldenDirectory.appendingPathComponent(name)
    if Self.updating {
      try FileManager.default.createDirectory(at: Self.goldenDirectory, withIntermediateDirectories: true)
      try actual.write(to: url, atomically: true, encoding: .utf8)
      return
    }
    let expected = try String(contentsOf: url, encoding: .utf8)
    #expect(
      actual == expected,
      "\(name) differs from Golden/\(name):\n\(Self.firstDifference(expected, actual))",
      sourceLocation: sourceLocation)
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

  static func normalize(_ value: Any, key: String?) -> Any {
    switch value {
    case let object as [String: Any]:
      return object.reduce(into: [String: Any]()) { $0[$1.key] = normalize($1.value, key: $1.key) }
    case let array as [Any]:
      return array.map { normalize($0, key: key) }
    case let string as String:
      // SHA-256 digests of files whose bytes are floats.
      if string.count == 64, string.allSatisfy(\.isHexDigit) { return "<sha256>" }
      return string
    default:
      if let key, measuredKeys.contains(key) || key.hasPrefix("time_") { return "<measured>" }
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
  static func normalizedLines(file: URL) throws -> String {
    let text = try String(contentsOf: file, encoding: .utf8)
    return try text.split(separator: "\n").map { line in
      let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
      let data = try JSONSerialization.data(
        withJSONObject: normalize(object, key: nil), options: [.sortedKeys, .withoutEscapingSlashes])
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
    text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
      var line = String(line)
      if line.hasPrefix("  blas:") {
        line = line.replacingOccurrences(
          of: #"OpenBLAS \S+ kernels"#, with: "OpenBLAS <kernel> kernels", options: .regularExpression)
      }
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
