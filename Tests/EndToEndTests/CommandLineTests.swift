import Foundation
import TestSupport
import Testing

/// The CLI as a user meets it: input errors end with status 2, one message naming the option, key or file, and
/// nothing written; `launch` prints the mpirun command; `eval` reproduces the final test accuracy.
@Suite(.serialized) struct CommandLineTests {
  static let tiny = [
    "--dataset", "synthetic", "--synthetic-train", "512", "--synthetic-test", "128", "--model", "mlp:16",
  ]

  /// Runs `arguments` expecting an input error; checks status 2, one message with `words`, and no files written.
  func expectInputError(_ arguments: [String], mentions words: [String], ranks: Int? = nil) throws {
    let scratch = try makeScratchDirectory("input-error")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let metrics = scratch.appendingPathComponent("metrics.jsonl").path
    let checkpoints = scratch.appendingPathComponent("checkpoints").path
    let full = arguments + ["--metrics", metrics, "--checkpoint-dir", checkpoints]
    let result =
      try ranks.map { try DDPTrainProcess.mpirun(ranks: $0, full, timeout: 60) }
      ?? DDPTrainProcess.run(full, timeout: 60)
    #expect(result.status == 2, "\(arguments): status \(result.status)\n\(result.output)")
    for word in words {
      #expect(result.stderr.contains(word), "\(arguments) should mention \(word):\n\(result.stderr)")
    }
    let reports = result.stderr.components(separatedBy: "ddp-train: ").count - 1
    #expect(reports == 1, "one message expected, got \(reports):\n\(result.stderr)")
    #expect(!FileManager.default.fileExists(atPath: metrics), "metrics file written despite the error")
    #expect(!FileManager.default.fileExists(atPath: checkpoints), "checkpoint directory created despite the error")
    #expect(result.seconds < 30)
  }

  @Test func batchSizeZero() throws {
    try expectInputError(Self.tiny + ["--batch-size", "0"], mentions: ["--batch-size", "positive"])
  }

  @Test func batchLargerThanTheShardUnderMPI() throws {
    try expectInputError(Self.tiny + ["--batch-size", "300"], mentions: ["--batch-size", "shard", "256"], ranks: 2)
  }

  @Test func missingDataDirectoryUnderMPI() throws {
    try expectInputError(["--data-dir", "/nonexistent/fashion"], mentions: ["/nonexistent/fashion"], ranks: 2)
  }

  @Test func badLearningRateAndSchedule() throws {
    try expectInputError(Self.tiny + ["--lr", "-1"], mentions: ["--lr"])
    try expectInputError(Self.tiny + ["--lr", "nan"], mentions: ["--lr"])
    try expectInputError(Self.tiny + ["--schedule", "linear"], mentions: ["--schedule"])
    try expectInputError(Self.tiny + ["--lr-scaling", "cubic"], mentions: ["--lr-scaling"])
    try expectInputError(Self.tiny + ["--model", "vgg"], mentions: ["--model"])
    try expectInputError(
      Self.tiny + ["--model", "seq:conv8k40,relu,linear10"], mentions: ["--model", "conv8k40", "1x28x28"])
    try expectInputError(Self.tiny + ["--epochs", "-3"], mentions: ["--epochs"])
  }

  @Test func configFileErrorsNameTheKey() throws {
    let scratch = try makeScratchDirectory("config")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let cases: [(String, [String])] = [
      ("train:\n  batch-sise: 64\n", ["train.batch-sise", "unknown key"]),
      ("train:\n  batch-size: abc\n", ["train.batch-size", "integer", "abc"]),
      ("train:\n  batch-size: [1, 2]\n", ["train.batch-size", "a list"]),
      ("cluster:\n  hosts:\n    - name: localhost\n      slots: 0\n", ["cluster.hosts[0].slots", "positive"]),
      ("train: [unclosed\n", ["not valid YAML"]),
    ]
    for (index, (text, words)) in cases.enumerated() {
      let path = scratch.appendingPathComponent("bad\(index).yaml").path
      try text.write(toFile: path, atomically: true, encoding: .utf8)
      try expectInputError(Self.tiny + ["--config", path], mentions: [path] + words)
    }
  }

  @Test("config file values apply and the command line overrides them")
  func configFileAppliesAndIsOverridden() throws {
    let scratch = try makeScratchDirectory("config-ok")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let path = scratch.appendingPathComponent("run.yaml").path
    try "train:\n  dataset: synthetic\n  synthetic-train: 512\n  model: mlp:16\n  batch-size: 32\n  max-steps: 3\n"
      .write(toFile: path, atomically: true, encoding: .utf8)
    let fromFile = try DDPTrainProcess.run(["--config", path])
    #expect(fromFile.status == 0, "\(fromFile.output)")
    #expect(fromFile.stdout.contains("1 worker × 32 = global batch 32"), "\(fromFile.stdout)")
    let overridden = try DDPTrainProcess.run(["--config", path, "--batch-size", "16"])
    #expect(overridden.stdout.contains("1 worker × 16 = global batch 16"), "\(overridden.stdout)")
  }

  @Test("launch turns cluster.yaml into the mpirun command")
  func launchDryRun() throws {
    let scratch = try makeScratchDirectory("launch")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let path = scratch.appendingPathComponent("cluster.yaml").path
    try "cluster:\n  hosts:\n    - name: localhost\n      slots: 3\ntrain:\n  batch-size: 8\n"
      .write(toFile: path, atomically: true, encoding: .utf8)
    let local = try DDPTrainProcess.run(["launch", "--config", path, "--dry-run", "--", "--epochs", "2"])
    #expect(local.status == 0, "\(local.output)")
    #expect(local.stdout.contains("mpirun -np 3"), "\(local.stdout)")
    #expect(local.stdout.contains("train --config \(path) --epochs 2"), "\(local.stdout)")
    let cores = ProcessInfo.processInfo.activeProcessorCount
    #expect(local.stdout.contains("--oversubscribe") == (3 > cores))

    try "cluster:\n  hosts:\n    - {name: node1, slots: 8}\n    - {name: node2, slots: 8}\n"
      .write(toFile: path, atomically: true, encoding: .utf8)
    let multi = try DDPTrainProcess.run(["launch", "--config", path, "--dry-run"])
    #expect(multi.stdout.contains("mpirun -np 16"), "\(multi.stdout)")
    #expect(multi.stdout.contains("--hostfile"), "\(multi.stdout)")
  }

  @Test("launch names this binary to mpirun also when it was found through PATH")
  func launchFromPath() throws {
    let scratch = try makeScratchDirectory("launch-path")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let path = scratch.appendingPathComponent("cluster.yaml").path
    try "cluster:\n  hosts:\n    - name: localhost\n      slots: 2\n".write(
      toFile: path, atomically: true, encoding: .utf8)
    let binary = URL(fileURLWithPath: DDPTrainProcess.binary).resolvingSymlinksInPath()
    let command = [
      "env", "PATH=\(binary.deletingLastPathComponent().path):/usr/bin:/bin", "ddp-train", "launch", "--config", path,
      "--dry-run",
    ]
    let result = try DDPTrainProcess.execute(command, timeout: 30, directory: scratch)
    #expect(result.status == 0, "\(result.output)")
    #expect(result.stdout.contains(" \(binary.path) train --config"), "\(result.stdout)")
  }

  @Test("launch really runs the job through mpirun")
  func launchRuns() throws {
    guard DDPTrainProcess.mpirunAvailable else { return }
    let scratch = try makeScratchDirectory("launch-run")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let path = try writeLocalLaunchConfig(in: scratch, maxSteps: 5)
    let result = try DDPTrainProcess.run(["launch", "--config", path], timeout: 120)
    #expect(result.status == 0, "\(result.output)")
    #expect(result.stdout.contains("2 workers × 16 = global batch 32"), "\(result.stdout)")
    #expect(result.stdout.contains("done: 5 steps"), "\(result.stdout)")
  }

  @Test("eval of the final checkpoint prints the test accuracy training ended with")
  func evalMatchesTraining() throws {
    let scratch = try makeScratchDirectory("eval")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let checkpoints = scratch.appendingPathComponent("checkpoints").path
    let train = try DDPTrainProcess.run(
      Self.tiny + ["--max-steps", "40", "--batch-size", "16", "--checkpoint-dir", checkpoints])
    #expect(train.status == 0, "\(train.output)")
    let evaluation = try DDPTrainProcess.run(["eval", "--checkpoint", checkpoints])
    #expect(evaluation.status == 0, "\(evaluation.output)")
    // "done: 40 steps in 0.1 s; test accuracy 0.8125, test loss 0.5432" vs "test loss 0.5432  test accuracy 0.8125"
    func number(after label: String, in text: String) -> String? {
      guard let range = text.range(of: label) else { return nil }
      return text[range.upperBound...].split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" }).first.map(
        String.init)
    }
    let done = train.stdout.split(separator: "\n").first { $0.hasPrefix("done:") }.map(String.init) ?? ""
    let trained = number(after: "test accuracy ", in: done)
    #expect(trained != nil, "\(train.stdout)")
    #expect(number(after: "test accuracy ", in: evaluation.stdout) == trained, "\(train.stdout)\n\(evaluation.stdout)")
    #expect(number(after: "test loss ", in: evaluation.stdout) == number(after: "test loss ", in: done))

    let missing = try DDPTrainProcess.run(["eval", "--checkpoint", scratch.appendingPathComponent("none").path])
    #expect(missing.status == 2, "\(missing.output)")
  }

  @Test("relative --metrics and --checkpoint-dir whose folders do not exist yet are created")
  func relativeOutputPaths() throws {
    let scratch = try makeScratchDirectory("relative")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let result = try DDPTrainProcess.run(
      Self.tiny + ["--max-steps", "2", "--metrics", "runs/a/metrics.jsonl", "--checkpoint-dir", "runs/a/checkpoints"],
      directory: scratch)
    #expect(result.status == 0, "\(result.output)")
    #expect(FileManager.default.fileExists(atPath: scratch.appendingPathComponent("runs/a/metrics.jsonl").path))
    #expect(
      FileManager.default.fileExists(atPath: scratch.appendingPathComponent("runs/a/checkpoints/step-00000002").path))
  }

  @Test func helpExitsZero() throws {
    let help = try DDPTrainProcess.run(["--help"])
    #expect(help.status == 0)
    #expect(help.stdout.contains("train (default)"), "\(help.stdout)")
    let trainHelp = try DDPTrainProcess.run(["train", "--help"])
    #expect(trainHelp.status == 0)
    #expect(trainHelp.stdout.contains("--batch-size"))
  }
}
