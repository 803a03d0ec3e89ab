import Checkpoints
import Foundation
import TestSupport
import Testing

/// `--optimizer adamw` and `lamb` through the trainer: their moments and step count checkpoint and resume bit for
/// bit at the same K, one step at another K equals the K that wrote the checkpoint, and their settings are checked.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct AdaptiveOptimizerTests {
  static func arguments(_ optimizer: String, batch: Int, checkpoints: URL, extra: [String] = []) -> [String] {
    [
      "--dataset", "synthetic", "--synthetic-train", "2048", "--model", "mlp:64,32", "--batch-size", String(batch),
      "--max-steps", "120", "--seed", "5", "--warmup-epochs", "1", "--checkpoint-every", "40",
      "--checkpoint-dir", checkpoints.path, "--optimizer", optimizer, "--lr", optimizer == "adamw" ? "0.002" : "0.01",
      "--no-bias-decay",
    ] + extra
  }

  /// The optimizer state of the newest checkpoint in `directory`, by tensor name.
  static func optimizerState(in directory: URL) throws -> [String: [Float]] {
    let checkpoints = CheckpointDirectory(path: directory.path)
    let newest = try #require(try checkpoints.list().first)
    let bytes = try checkpoints.read(CheckpointDirectory.optimizerFile, of: newest)
    return Dictionary(
      uniqueKeysWithValues: try SafeTensors.decode(bytes, path: newest.path).tensors.map { ($0.name, $0.values) })
  }

  @Test(
    "a run killed at step 90 and resumed from 80 ends with the uninterrupted run's weights and moments, bit for bit",
    arguments: ["adamw", "lamb"])
  func resumeIsBitwise(optimizer: String) throws {
    let scratch = try makeScratchDirectory("resume-\(optimizer)")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let (full, interrupted, reference) = try InterruptedRun.run(ranks: 2, in: scratch, failAt: 90, resumesAt: 80) {
      Self.arguments(optimizer, batch: 16, checkpoints: $0)
    }
    #expect(reference.stdout.contains("\(optimizer): "), "\(reference.stdout)")
    #expect(bitwiseDifference(try finalParameters(in: full), try finalParameters(in: interrupted)) == nil)
    let a = try Self.optimizerState(in: full)
    let b = try Self.optimizerState(in: interrupted)
    #expect(Set(a.keys) == Set(b.keys))
    #expect(a.keys.contains("0.weight.exp_avg") && a.keys.contains("4.bias.exp_avg_sq"), "\(a.keys.sorted())")
    for (name, values) in a { #expect(bitwiseDifference(values, b[name] ?? []) == nil, "\(name)") }
  }

  @Test(
    "one step of 2 workers × 16 from a checkpoint of 1 × 32 equals one step of 1 × 32 (at steps 40 and 80; 1e-5)",
    arguments: ["adamw", "lamb"])
  func otherWorldSizeSameGlobalBatch(optimizer: String) throws {
    let scratch = try makeScratchDirectory("other-k-\(optimizer)")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let full = scratch.appendingPathComponent("full")
    let reference = try DDPTrainProcess.run(Self.arguments(optimizer, batch: 32, checkpoints: full))
    #expect(reference.status == 0, "\(reference.output)")
    for step in [40, 80] {
      let start = try SingleStep.parameters(at: step, in: full)
      let same = scratch.appendingPathComponent("k1-\(step)")
      let switched = scratch.appendingPathComponent("k2-\(step)")
      let a = try SingleStep.take(
        from: full, at: step, into: same, Self.arguments(optimizer, batch: 32, checkpoints: same)
      ) { try DDPTrainProcess.run($0) }
      let b = try SingleStep.take(
        from: full, at: step, into: switched, Self.arguments(optimizer, batch: 16, checkpoints: switched)
      ) { try DDPTrainProcess.mpirun(ranks: 2, $0) }
      SingleStep.expectSameStep(b.parameters, a.parameters, from: start, "\(optimizer) step \(step)")
    }
  }

  @Test(
    "settings that do not apply to the optimizer, or are out of range, are exit-2 errors naming the option",
    arguments: [
      (["--optimizer", "adamw", "--momentum", "0.9"], "--momentum"),
      (["--optimizer", "lamb", "--nesterov"], "--nesterov"),
      (["--betas", "0.9,0.99"], "--betas"),
      (["--optimizer", "lars", "--eps", "1e-8"], "--eps"),
      (["--optimizer", "adamw", "--betas", "0.9,1"], "--betas"),
      (["--optimizer", "adamw", "--betas", "0.9"], "--betas"),
      (["--optimizer", "lamb", "--eps", "0"], "--eps"),
      (["--optimizer", "adamw", "--weight-decay", "-1"], "--weight-decay"),
    ])
  func badSettings(words: [String], option: String) throws {
    let scratch = try makeScratchDirectory("optimizer-input")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let metrics = scratch.appendingPathComponent("m.jsonl")
    let result = try DDPTrainProcess.run(
      ["--dataset", "synthetic", "--max-steps", "2", "--metrics", metrics.path] + words)
    #expect(result.status == 2, "\(result.output)")
    #expect(result.stderr.contains(option), "\(result.stderr)")
    #expect(!FileManager.default.fileExists(atPath: metrics.path))
  }

  @Test("resuming SGD's checkpoint with --optimizer adamw is an exit-2 error naming both")
  func resumeIntoAnotherOptimizer() throws {
    let scratch = try makeScratchDirectory("optimizer-switch")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let directory = scratch.appendingPathComponent("c")
    let common = ["--dataset", "synthetic", "--model", "mlp:16", "--checkpoint-dir", directory.path]
    let first = try DDPTrainProcess.run(common + ["--max-steps", "3"])
    #expect(first.status == 0, "\(first.output)")
    let switched = try DDPTrainProcess.run(common + ["--max-steps", "6", "--resume", "--optimizer", "adamw"])
    #expect(switched.status == 2, "\(switched.output)")
    #expect(switched.stderr.contains("torch.optim.SGD") && switched.stderr.contains("adamw"), "\(switched.stderr)")
    #expect(try CheckpointDirectory(path: directory.path).list().map(\.step) == [3])
    // LARS continues SGD's momentum buffer, as it always has.
    let lars = try DDPTrainProcess.run(common + ["--max-steps", "6", "--resume", "--optimizer", "lars"])
    #expect(lars.status == 0, "\(lars.output)")
  }
}
