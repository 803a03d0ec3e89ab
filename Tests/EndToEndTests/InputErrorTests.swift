import Checkpoints
import Foundation
import TestSupport
import Testing

/// Bad input, through real `mpirun -np 2`: status 2, one message that names the file, option or key and what was
/// expected, a prompt end, and no checkpoint or metrics file created or changed.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
final class InputErrorTests {
  let scratch: URL
  let data: URL
  let metrics: URL

  init() throws {
    scratch = try makeScratchDirectory("input-errors")
    data = scratch.appendingPathComponent("data")
    metrics = scratch.appendingPathComponent("metrics.jsonl")
    try IDXFixture.writeValid(into: data)
  }

  deinit { try? FileManager.default.removeItem(at: scratch) }

  static let small = ["--model", "mlp:16", "--batch-size", "8", "--max-steps", "3"]

  /// Everything under `url` (relative path → size and SHA-256), to prove nothing changed.
  func snapshot(_ url: URL) -> [String: String] {
    var result: [String: String] = [:]
    guard let walker = FileManager.default.enumerator(atPath: url.path) else { return result }
    for case let relative as String in walker {
      let path = url.appendingPathComponent(relative).path
      var isDirectory: ObjCBool = false
      FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
      let bytes = isDirectory.boolValue ? [] : [UInt8](FileManager.default.contents(atPath: path) ?? Data())
      result[relative] = isDirectory.boolValue ? "dir" : SHA256.hexDigest(bytes)
    }
    return result
  }

  func expectInputError(
    _ arguments: [String], mentions words: [String], checkpoints: URL? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
  ) throws {
    let checkpointDirectory = checkpoints ?? scratch.appendingPathComponent("checkpoints-\(UUID().uuidString)")
    let before = snapshot(checkpointDirectory)
    let existedBefore = FileManager.default.fileExists(atPath: checkpointDirectory.path)
    let full = arguments + ["--metrics", metrics.path, "--checkpoint-dir", checkpointDirectory.path]
    let result = try DDPTrainProcess.mpirun(ranks: 2, full, timeout: 60)
    #expect(
      result.status == 2, "\(arguments): status \(result.status)\n\(result.output)", sourceLocation: sourceLocation)
    for word in words {
      #expect(
        result.stderr.contains(word), "\(arguments): should mention '\(word)':\n\(result.stderr)",
        sourceLocation: sourceLocation)
    }
    let reports = result.stderr.components(separatedBy: "ddp-train: ").count - 1
    #expect(reports == 1, "\(arguments): one message expected:\n\(result.stderr)", sourceLocation: sourceLocation)
    #expect(result.seconds < 20, "\(arguments): took \(result.seconds) s", sourceLocation: sourceLocation)
    #expect(!FileManager.default.fileExists(atPath: metrics.path), "metrics written", sourceLocation: sourceLocation)
    #expect(
      FileManager.default.fileExists(atPath: checkpointDirectory.path) == existedBefore, sourceLocation: sourceLocation)
    #expect(snapshot(checkpointDirectory) == before, "checkpoint directory changed", sourceLocation: sourceLocation)
  }

  /// A copy of the valid data directory with one change.
  func brokenData(_ change: (URL) throws -> Void) throws -> URL {
    let copy = scratch.appendingPathComponent("data-\(UUID().uuidString)")
    try FileManager.default.copyItem(at: data, to: copy)
    try change(copy)
    return copy
  }

  // MARK: data files

  @Test func missingDataDirectory() throws {
    try expectInputError(
      Self.small + ["--data-dir", scratch.appendingPathComponent("nope").path], mentions: ["nope", "does not exist"])
  }

  @Test func missingFile() throws {
    let broken = try brokenData {
      try FileManager.default.removeItem(at: $0.appendingPathComponent("train-labels-idx1-ubyte"))
    }
    try expectInputError(Self.small + ["--data-dir", broken.path], mentions: ["train-labels-idx1-ubyte"])
  }

  @Test func wrongMagic() throws {
    let broken = try brokenData { url in
      try IDXFixture.labels([1, 2, 3]).write(to: url.appendingPathComponent("train-images-idx3-ubyte"))
    }
    try expectInputError(Self.small + ["--data-dir", broken.path], mentions: ["train-images-idx3-ubyte", "magic"])
  }

  @Test func truncatedImages() throws {
    let broken = try brokenData { url in
      let file = url.appendingPathComponent("train-images-idx3-ubyte")
      let bytes = try Data(contentsOf: file)
      try bytes.prefix(bytes.count - 100).write(to: file)
    }
    try expectInputError(Self.small + ["--data-dir", broken.path], mentions: ["train-images-idx3-ubyte", "expected"])
  }

  @Test func imageLabelCountMismatch() throws {
    let broken = try brokenData { url in
      try IDXFixture.labels(Array(repeating: 1, count: IDXFixture.trainCount - 1))
        .write(to: url.appendingPathComponent("train-labels-idx1-ubyte"))
    }
    try expectInputError(
      Self.small + ["--data-dir", broken.path], mentions: ["train-labels-idx1-ubyte", "\(IDXFixture.trainCount)"])
  }

  @Test func labelOutOfRange() throws {
    let broken = try brokenData { url in
      var labels = (0..<IDXFixture.trainCount).map { UInt8($0 % 10) }
      labels[7] = 12
      try IDXFixture.labels(labels).write(to: url.appendingPathComponent("train-labels-idx1-ubyte"))
    }
    try expectInputError(Self.small + ["--data-dir", broken.path], mentions: ["train-labels-idx1-ubyte", "12"])
  }

  @Test func notGzipDespiteGz() throws {
    let broken = try brokenData { url in
      let plain = url.appendingPathComponent("t10k-labels-idx1-ubyte")
      try FileManager.default.moveItem(at: plain, to: url.appendingPathComponent("t10k-labels-idx1-ubyte.gz"))
    }
    try expectInputError(Self.small + ["--data-dir", broken.path], mentions: ["t10k-labels-idx1-ubyte.gz", "gzip"])
  }

  @Test func emptyFile() throws {
    let broken = try brokenData { url in try Data().write(to: url.appendingPathComponent("t10k-images-idx3-ubyte")) }
    try expectInputError(Self.small + ["--data-dir", broken.path], mentions: ["t10k-images-idx3-ubyte", "empty"])
  }

  // MARK: NumPy data

  /// `numpy.npz` (deflated, Keras's names) and `npy/` (the four files) of 64 + 32 samples of 28×28, written by
  /// NumPy; `change` is Python run after `x_train`, `y_train`, `x_test`, `y_test` are made and before they are saved.
  func numpyData(_ change: String = "") throws -> URL {
    let out = scratch.appendingPathComponent("numpy-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
    try NumPyScript.run(
      """
      import os, sys
      import numpy as np
      out = sys.argv[1]
      rng = np.random.default_rng(0)
      x_train, x_test = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 256, (32, 28, 28), dtype=np.uint8)
      y_train, y_test = np.arange(64) % 10, np.arange(32) % 10
      \(change)
      np.savez_compressed(out + "/numpy.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
      os.makedirs(out + "/npy")
      for name, a in [("train-images", x_train), ("train-labels", y_train), ("test-images", x_test), ("test-labels", y_test)]:
          np.save(out + "/npy/" + name + ".npy", a)
      """, [out.path])
    return out
  }

  @Test func numpyTruncatedArray() throws {
    let data = try numpyData()
    let file = data.appendingPathComponent("npy/train-images.npy")
    let bytes = try Data(contentsOf: file)
    try bytes.prefix(bytes.count - 100).write(to: file)
    try expectInputError(
      Self.small + ["--dataset", "npy", "--data-dir", data.appendingPathComponent("npy").path],
      mentions: ["train-images.npy", "truncated array"])
  }

  @Test func numpyImagesOfAnUnusableType() throws {
    let data = try numpyData("x_train = x_train.astype(np.float64)")
    try expectInputError(
      Self.small + ["--dataset", "npz", "--data-dir", data.appendingPathComponent("numpy.npz").path],
      mentions: ["numpy.npz:x_train.npy", "float64", "expected uint8"])
  }

  @Test func numpyMissingArray() throws {
    let data = try numpyData()
    try NumPyScript.run(
      """
      import sys
      import numpy as np
      a = np.load(sys.argv[1])
      np.savez(sys.argv[2], x_train=a["x_train"], y_train=a["y_train"], x_test=a["x_test"])
      """, [data.appendingPathComponent("numpy.npz").path, data.appendingPathComponent("three.npz").path])
    try expectInputError(
      Self.small + ["--dataset", "npz", "--data-dir", data.appendingPathComponent("three.npz").path],
      mentions: ["three.npz", "no array 'y_test'"])
  }

  @Test func numpyLabelsOutOfRangeAndCountMismatch() throws {
    let data = try numpyData("y_test[5] = 12")
    try expectInputError(
      Self.small + ["--dataset", "npy", "--data-dir", data.appendingPathComponent("npy").path, "--classes", "10"],
      mentions: ["test-labels.npy", "label at index 5 is 12", "--classes 10"])
    let short = try numpyData("y_train = y_train[:60]")
    try expectInputError(
      Self.small + ["--dataset", "npz", "--data-dir", short.appendingPathComponent("numpy.npz").path],
      mentions: ["numpy.npz:y_train.npy", "expected 64 labels", "found 60"])
  }

  @Test func numpyClassNamesOfAnotherCount() throws {
    let data = try numpyData()
    let names = scratch.appendingPathComponent("names.txt")
    try Data("a\nb\nc\n".utf8).write(to: names)
    try expectInputError(
      Self.small + [
        "--dataset", "npz", "--data-dir", data.appendingPathComponent("numpy.npz").path, "--class-names", names.path,
      ], mentions: ["names.txt", "names 3 classes; the data has 10"])
  }

  /// The image folders of the Datasets tests' fixture script (its own PNG encoder): `gray` and the broken copies.
  func imageFolders() throws -> URL {
    let out = scratch.appendingPathComponent("folders")
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("DatasetsTests/Fixtures/make_image_folders.py")
    try NumPyScript.run(
      "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
      [script.path, out.path])
    return out
  }

  @Test func imageFolderWithAnImageOfAnotherSize() throws {
    let folders = try imageFolders()
    try expectInputError(
      Self.small + ["--dataset", "folder", "--data-dir", folders.appendingPathComponent("other-size").path],
      mentions: ["other-size/train/dog/001.png", "is 6x6 pixels; expected 6x5"])
  }

  @Test func imageFolderWithAnEmptyClass() throws {
    let folders = try imageFolders()
    try expectInputError(
      Self.small + ["--dataset", "folder", "--data-dir", folders.appendingPathComponent("empty-class").path],
      mentions: ["empty-class/train/eel", "empty class folder"])
  }

  @Test func cacheDirectoryThatCannotBeWritten() throws {
    let data = try numpyData()
    let blocker = scratch.appendingPathComponent("a-file")
    try Data([1]).write(to: blocker)
    try expectInputError(
      Self.small + [
        "--dataset", "npz", "--data-dir", data.appendingPathComponent("numpy.npz").path, "--cache-dir",
        blocker.appendingPathComponent("cache").path,
      ], mentions: ["a-file/cache", "cache directory cannot be created", "--cache-dir"])
  }

  // MARK: options and config files

  @Test(arguments: [
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "40"], "--batch-size"),  // shard is 64/2 = 32
    (["--epochs", "-1"], "--epochs"), (["--max-steps", "-5"], "--max-steps"), (["--lr", "0"], "--lr"),
    (["--lr", "-0.1"], "--lr"), (["--lr", "nan"], "--lr"), (["--warmup-epochs", "-1"], "--warmup-epochs"),
    (["--dataset", "cifar"], "--dataset"), (["--model", "vgg"], "--model"),
    (["--lr-scaling", "cube"], "--lr-scaling"),
    (["--schedule", "exponential"], "--schedule"), (["--momentum", "1.5"], "--momentum"), (["--keep", "0"], "--keep"),
    (["--step-timeout", "0"], "--step-timeout"), (["--no-such-option"], "--no-such-option"),
  ])
  func badOption(change: [String], option: String) throws {
    var arguments = Self.small + ["--data-dir", data.path]
    // A later occurrence of an option wins; drop the default batch when the case sets one.
    if change.first == "--batch-size" { arguments.removeSubrange(2..<4) }
    try expectInputError(arguments + change, mentions: [option])
  }

  @Test(arguments: [
    ("train: [unclosed\n", "not valid YAML"), ("train:\n  batch-sise: 8\n", "train.batch-sise"),
    ("train:\n  batch-size: eight\n", "train.batch-size"), ("train:\n  lr: [1]\n", "train.lr"),
    ("cluster:\n  hosts:\n    - {name: localhost, slots: 0}\n", "cluster.hosts[0].slots"),
    ("cluster:\n  hosts:\n    - {name: localhost, slots: -2}\n", "cluster.hosts[0].slots"),
    ("colour: blue\n", "colour"),
  ])
  func badConfigFile(text: String, key: String) throws {
    let path = scratch.appendingPathComponent("config-\(UUID().uuidString).yaml")
    try text.write(to: path, atomically: true, encoding: .utf8)
    try expectInputError(Self.small + ["--data-dir", data.path, "--config", path.path], mentions: [path.path, key])
  }

  // MARK: checkpoints

  @Test func checkpointDirectoryIsAFile() throws {
    let file = scratch.appendingPathComponent("a-file")
    try Data("x".utf8).write(to: file)
    try expectInputError(Self.small + ["--data-dir", data.path], mentions: [file.path], checkpoints: file)
  }

  @Test func checkpointDirectoryUnderAFile() throws {
    let file = scratch.appendingPathComponent("another-file")
    try Data("x".utf8).write(to: file)
    let path = file.appendingPathComponent("checkpoints")
    try expectInputError(Self.small + ["--data-dir", data.path], mentions: [file.path], checkpoints: path)
  }

  @Test func resumeWithNothingToResume() throws {
    try expectInputError(
      Self.small + ["--data-dir", data.path, "--resume"], mentions: ["--resume", "no complete checkpoint"])
  }

  /// A directory holding one complete checkpoint of `mlp:16`, then `damage` applied to it.
  func checkpoint(_ damage: (URL) throws -> Void) throws -> URL {
    let directory = scratch.appendingPathComponent("ckpt-\(UUID().uuidString)")
    let run = try DDPTrainProcess.run(Self.small + ["--data-dir", data.path, "--checkpoint-dir", directory.path])
    #expect(run.status == 0, "\(run.output)")
    try damage(directory.appendingPathComponent("step-00000003"))
    return directory
  }

  @Test func existingCheckpointsWithoutResume() throws {
    let directory = try checkpoint { _ in }
    try expectInputError(
      Self.small + ["--data-dir", data.path], mentions: ["already holds checkpoints", "--resume"],
      checkpoints: directory)
  }

  @Test func checkpointOfAnotherModel() throws {
    let directory = try checkpoint { _ in }
    var arguments = Self.small + ["--data-dir", data.path, "--resume"]
    arguments[1] = "mlp:32"
    try expectInputError(arguments, mentions: ["mlp 784-16-10", "mlp 784-32-10"], checkpoints: directory)
  }

  func rewrite(_ file: URL, _ change: (inout [UInt8]) -> Void) throws {
    var bytes = [UInt8](try Data(contentsOf: file))
    change(&bytes)
    try Data(bytes).write(to: file)
  }

  @Test func truncatedSafetensors() throws {
    let directory = try checkpoint { step in
      try rewrite(step.appendingPathComponent("model.safetensors")) { $0.removeLast(1000) }
    }
    try expectInputError(
      Self.small + ["--data-dir", data.path, "--resume"], mentions: ["model.safetensors"], checkpoints: directory)
  }

  @Test func headerLengthPastEndOfFile() throws {
    let directory = try checkpoint { step in
      try rewrite(step.appendingPathComponent("model.safetensors")) { bytes in
        bytes.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Array($0) })
      }
    }
    try expectInputError(
      Self.small + ["--data-dir", data.path, "--resume"], mentions: ["model.safetensors", "header"],
      checkpoints: directory)
  }

  @Test func headerNotJSON() throws {
    let directory = try checkpoint { step in
      try rewrite(step.appendingPathComponent("optimizer.safetensors")) { bytes in bytes[8] = UInt8(ascii: "#") }
    }
    try expectInputError(
      Self.small + ["--data-dir", data.path, "--resume"], mentions: ["optimizer.safetensors", "JSON"],
      checkpoints: directory)
  }

  @Test func tensorWithWrongDtype() throws {
    let directory = try checkpoint { step in
      try rewrite(step.appendingPathComponent("model.safetensors")) { bytes in
        // The first "F32" in the JSON header becomes "F16" (same length, so offsets stay valid).
        let needle = Array("\"F32\"".utf8)
        if let start = (8..<(bytes.count - needle.count)).first(where: {
          Array(bytes[$0..<($0 + needle.count)]) == needle
        }) {
          bytes[start + 2] = UInt8(ascii: "1")
          bytes[start + 3] = UInt8(ascii: "6")
        }
      }
    }
    try expectInputError(
      Self.small + ["--data-dir", data.path, "--resume"], mentions: ["model.safetensors", "F16"], checkpoints: directory
    )
  }

  @Test func tensorWithWrongShape() throws {
    let directory = try checkpoint { step in
      let file = step.appendingPathComponent("model.safetensors")
      let decoded = try SafeTensors.decode([UInt8](try Data(contentsOf: file)), path: file.path)
      let reshaped = decoded.tensors.map { tensor -> NamedTensor in
        var tensor = tensor
        if tensor.name == "0.weight" { tensor.shape = [tensor.shape[1], tensor.shape[0]] }
        return tensor
      }
      try Data(SafeTensors.encode(reshaped, metadata: decoded.metadata)).write(to: file)
    }
    try expectInputError(
      Self.small + ["--data-dir", data.path, "--resume"], mentions: ["model.safetensors", "0.weight", "shape"],
      checkpoints: directory)
  }

  @Test func stateJSONMissing() throws {
    let directory = try checkpoint { step in
      try FileManager.default.removeItem(at: step.appendingPathComponent("state.json"))
    }
    try expectInputError(
      Self.small + ["--data-dir", data.path, "--resume"], mentions: ["no complete checkpoint"], checkpoints: directory)
  }

  @Test func stateJSONMalformed() throws {
    let directory = try checkpoint { step in
      try Data("{\"step\": \"three\"}".utf8).write(to: step.appendingPathComponent("state.json"))
    }
    try expectInputError(
      Self.small + ["--data-dir", data.path, "--resume"], mentions: ["state.json"], checkpoints: directory)
  }

  @Test func damagedBytesFailTheHash() throws {
    let directory = try checkpoint { step in
      try rewrite(step.appendingPathComponent("model.safetensors")) { bytes in bytes[bytes.count - 1] ^= 0x40 }
    }
    try expectInputError(
      Self.small + ["--data-dir", data.path, "--resume"], mentions: ["model.safetensors", "SHA-256"],
      checkpoints: directory)
  }
}

/// Small valid IDX files (64 training and 16 test images of 28x28), written by hand from the format's definition.
enum IDXFixture {
  static let trainCount = 64
  static let testCount = 16

  static func bigEndian(_ value: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(value).bigEndian) { Array($0) } }

  static func images(count: Int) -> Data {
    var bytes: [UInt8] = [0, 0, 8, 3] + bigEndian(count) + bigEndian(28) + bigEndian(28)
    bytes += (0..<(count * 784)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    return Data(bytes)
  }

  static func labels(_ labels: [UInt8]) -> Data { Data([0, 0, 8, 1] + bigEndian(labels.count) + labels) }

  static func writeValid(into directory: URL) throws {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    try images(count: trainCount).write(to: directory.appendingPathComponent("train-images-idx3-ubyte"))
    try labels((0..<trainCount).map { UInt8($0 % 10) }).write(
      to: directory.appendingPathComponent("train-labels-idx1-ubyte"))
    try images(count: testCount).write(to: directory.appendingPathComponent("t10k-images-idx3-ubyte"))
    try labels((0..<testCount).map { UInt8($0 % 10) }).write(
      to: directory.appendingPathComponent("t10k-labels-idx1-ubyte"))
  }
}
