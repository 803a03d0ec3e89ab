import Checkpoints
import Foundation
import TestSupport
import Testing

/// Batch normalisation through real mpirun: `--batch-norm sync` keeps K×B ≡ 1×(K·B) (one step at a time from common
/// checkpoints, `SingleStep`), `local` keeps the shared-memory sum bit for bit what --simulate-workers computes, and
/// resume stays bitwise; running statistics and num_batches_tracked included (they are in model.safetensors, which
/// `finalParameters` and `SingleStep.parameters` read whole). A small residual network on the synthetic images: a
/// conv by im2col, an identity block and a downsampling one (batch norms inside, and in the shortcut), Winograd and
/// strided convolutions, global average pooling.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct BatchNormModelTests {
  static let model =
    "seq:conv8k3p1,bn,relu,pool2,res(conv8k3p1,bn,relu,conv8k3p1,bn),relu,res(conv16k3s2p1,bn,relu,conv16k3p1,bn),relu,gap,linear10"
  /// conv 8·1·9+8, bn 16; block 4: conv 8·8·9+8, bn 16, conv 584, bn 16; block 6: conv 16·8·9+16, bn 32, conv
  /// 16·16·9+16, bn 32, shortcut conv 16·8+16, bn 32; linear 10·16+10.
  static let parameterCount = 80 + 16 + 1200 + 3728 + 170

  static func arguments(batch: Int, steps: Int = 80, checkpoints: URL, extra: [String] = []) -> [String] {
    [
      "--dataset", "synthetic", "--synthetic-train", "2048", "--synthetic-test", "512", "--model", model,
      "--batch-size", String(batch), "--max-steps", String(steps), "--seed", "5", "--lr", "0.05", "--base-batch", "32",
      "--warmup-epochs", "0.5", "--checkpoint-dir", checkpoints.path,
    ] + extra
  }

  /// The newest checkpoint's model.safetensors, as bytes.
  static func modelFile(in directory: URL) throws -> [UInt8] {
    let checkpoints = CheckpointDirectory(path: directory.path)
    let newest = try #require(try checkpoints.list().first)
    return try checkpoints.read(CheckpointDirectory.modelFile, of: newest)
  }

  @Test(
    "--batch-norm sync: one step of 2 ranks × B=16 from a common checkpoint equals one step of 1 rank × B=32, running statistics included (at steps 20 and 50; 1e-5)"
  )
  func synchronisedRanksEqualOneRank() throws {
    let scratch = try makeScratchDirectory("bn-sync")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let sync = ["--batch-norm", "sync"]
    let reference = scratch.appendingPathComponent("k1")
    let one = try DDPTrainProcess.run(
      Self.arguments(batch: 32, checkpoints: reference, extra: sync + ["--checkpoint-every", "10"]))
    #expect(one.status == 0, "\(one.output)")
    #expect(one.stdout.contains("(\(Self.parameterCount) parameters)"), "\(one.stdout)")
    for step in [20, 50] {
      let start = try SingleStep.parameters(at: step, in: reference)
      let k1 = scratch.appendingPathComponent("k1-\(step)")
      let k2 = scratch.appendingPathComponent("k2-\(step)")
      let a = try SingleStep.take(
        from: reference, at: step, into: k1, Self.arguments(batch: 32, checkpoints: k1, extra: sync)
      ) { try DDPTrainProcess.run($0) }
      let b = try SingleStep.take(
        from: reference, at: step, into: k2, Self.arguments(batch: 16, checkpoints: k2, extra: sync)
      ) { try DDPTrainProcess.mpirun(ranks: 2, $0) }
      SingleStep.expectSameStep(b.parameters, a.parameters, from: start, "step \(step)")
    }
  }

  /// The running statistics' rule under `local` (Note [Running statistics]): they take the workers' batch means
  /// averaged over the workers, and two halves of 16 samples average to the mean of the 32. The first batch norm's
  /// input (the first convolution's output) is the same either way, so one step of 2 ranks × 16 leaves it the
  /// running mean one step of 1 rank × 32 leaves. Everything after it differs: each half is normalised with its
  /// own statistics, which `sync` would not do.
  @Test(
    "--batch-norm local: one step of 2 ranks × B=16 from a common checkpoint leaves the first batch norm the running mean of one rank × B=32 (1e-5), and other weights"
  )
  func localRunningMeansAreTheWorkersAverage() throws {
    let scratch = try makeScratchDirectory("bn-local-mean")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let reference = scratch.appendingPathComponent("k1")
    let one = try DDPTrainProcess.run(Self.arguments(batch: 32, steps: 30, checkpoints: reference))
    #expect(one.status == 0, "\(one.output)")
    let step = 30
    let k1 = scratch.appendingPathComponent("k1-next")
    let k2 = scratch.appendingPathComponent("k2-next")
    let a = try SingleStep.take(from: reference, at: step, into: k1, Self.arguments(batch: 32, checkpoints: k1)) {
      try DDPTrainProcess.run($0)
    }
    let b = try SingleStep.take(from: reference, at: step, into: k2, Self.arguments(batch: 16, checkpoints: k2)) {
      try DDPTrainProcess.mpirun(ranks: 2, $0)
    }
    func tensors(_ directory: URL) throws -> [String: NamedTensor] {
      let tensors = try SafeTensors.decode(try Self.modelFile(in: directory), path: directory.path).tensors
      return Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0) })
    }
    let (single, pair) = (try tensors(k1), try tensors(k2))
    let before = try tensors(reference)
    let (x, y, start) = (
      pair["1.running_mean"]!.values, single["1.running_mean"]!.values, before["1.running_mean"]!.values
    )
    #expect(relativeDistance(x, y) < 1e-5, "1.running_mean: \(relativeDistance(x, y)) apart")
    #expect(relativeDistance(y, start) > 1e-3, "1.running_mean moved only \(relativeDistance(y, start))")
    #expect(relativeDistance(b.parameters, a.parameters) > 1e-4, "the weights should differ")
  }

  @Test(
    "--batch-norm local with augmentation: mpirun -np 3 through shared memory equals --simulate-workers 3 bit for bit (model.safetensors byte for byte: weights, running statistics, num_batches_tracked)"
  )
  func localRanksEqualSimulatedWorkers() throws {
    let scratch = try makeScratchDirectory("bn-local")
    defer { try? FileManager.default.removeItem(at: scratch) }
    // --check-consistency compares every rank's weights and running statistics every 10 steps. The augmentation
    // is on: its draws follow the sample's place in the epoch's permutation, not the worker.
    let augmentation = ["--random-crop", "2", "--random-flip", "--normalize", "0.2:0.3"]
    let real = try DDPTrainProcess.mpirun(
      ranks: 3,
      Self.arguments(
        batch: 16, steps: 50, checkpoints: scratch.appendingPathComponent("real"),
        extra: ["--check-consistency", "10"] + augmentation))
    #expect(real.status == 0, "\(real.output)")
    #expect(real.stdout.contains("gradients: shared memory (3 ranks on one host)"), "\(real.stdout)")
    let simulated = try DDPTrainProcess.run(
      Self.arguments(
        batch: 16, steps: 50, checkpoints: scratch.appendingPathComponent("sim"),
        extra: ["--simulate-workers", "3"] + augmentation))
    #expect(simulated.status == 0, "\(simulated.output)")
    let a = try Self.modelFile(in: scratch.appendingPathComponent("real"))
    #expect(a == (try Self.modelFile(in: scratch.appendingPathComponent("sim"))))
    let tensors = try SafeTensors.decode(a, path: "real").tensors
    let tracked = try #require(tensors.first { $0.name == "1.num_batches_tracked" })
    #expect(tracked.dtype == .i64 && tracked.shape == [] && tracked.integers == [50])
    // The running statistics moved from their start (0 and 1), in the shortcut's batch norm too.
    let mean = try #require(tensors.first { $0.name == "6.shortcut.1.running_mean" })
    #expect(mean.values.contains { $0 != 0 })
  }

  @Test(
    "a run with batch norm resumed mid-epoch ends bit for bit where the uninterrupted run ends (K=2, local), and `eval` of its checkpoint gives the run's own test accuracy"
  )
  func resumeMidEpochAndEvaluate() throws {
    let scratch = try makeScratchDirectory("bn-resume")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let whole = scratch.appendingPathComponent("whole")
    let cut = scratch.appendingPathComponent("cut")
    // 2048 / 32 = 64 steps per epoch: step 40 is mid-epoch 0.
    let first = try DDPTrainProcess.mpirun(
      ranks: 2, Self.arguments(batch: 16, steps: 90, checkpoints: whole, extra: ["--checkpoint-every", "40"]))
    #expect(first.status == 0, "\(first.output)")
    try SingleStep.copyCheckpoint(40, from: whole, to: cut)
    let rest = try DDPTrainProcess.mpirun(
      ranks: 2, Self.arguments(batch: 16, steps: 90, checkpoints: cut, extra: ["--resume"]))
    #expect(rest.status == 0, "\(rest.output)")
    #expect(rest.stdout.contains("at step 40"), "\(rest.stdout)")
    #expect(try Self.modelFile(in: cut) == (try Self.modelFile(in: whole)))

    // The run's last line reports the test accuracy it measured with the running statistics.
    let reported = try #require(first.stdout.split(separator: "\n").last { $0.hasPrefix("done:") })
    let accuracy = try #require(reported.split(separator: " ").firstIndex(of: "accuracy")).advanced(by: 1)
    let value = reported.split(separator: " ")[accuracy].trimmingCharacters(in: .punctuationCharacters)
    let evaluated = try DDPTrainProcess.run(["eval", "--checkpoint", whole.path])
    #expect(evaluated.status == 0, "\(evaluated.output)")
    #expect(evaluated.stdout.contains(value), "run: \(reported); eval: \(evaluated.stdout)")
  }

  @Test(
    "a stop with batch norm (sync, flips): SIGTERM during step 40's checkpoint write stops every rank after step 41 with status 75, and --resume ends bit for bit where the uninterrupted run ends"
  )
  func stopAndRestart() throws {
    let scratch = try makeScratchDirectory("bn-stop")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let whole = scratch.appendingPathComponent("whole")
    let stopped = scratch.appendingPathComponent("stopped")
    let extra = ["--batch-norm", "sync", "--random-flip", "--checkpoint-every", "20"]
    let reference = try DDPTrainProcess.mpirun(
      ranks: 2, Self.arguments(batch: 16, steps: 70, checkpoints: whole, extra: extra))
    #expect(reference.status == 0, "\(reference.output)")
    // termwrite: rank 0 raises SIGTERM once the first file of step 40's checkpoint is on disk.
    let stop = try DDPTrainProcess.mpirun(
      ranks: 2,
      Self.arguments(batch: 16, steps: 70, checkpoints: stopped, extra: extra + ["--inject-fault", "termwrite@0:40"]))
    #expect(stop.status == 75, "\(stop.output)")
    #expect(stop.stdout.contains("stopped by SIGTERM after step 41"), "\(stop.output)")
    let resumed = try DDPTrainProcess.mpirun(
      ranks: 2, Self.arguments(batch: 16, steps: 70, checkpoints: stopped, extra: extra + ["--resume"]))
    #expect(resumed.status == 0, "\(resumed.output)")
    #expect(resumed.stdout.contains("at step 41"), "\(resumed.stdout)")
    #expect(try Self.modelFile(in: stopped) == (try Self.modelFile(in: whole)))
  }

  @Test("--batch-norm sync with --simulate-workers is an input error (exit 2) that writes nothing")
  func synchronisedSimulationIsRefused() throws {
    let scratch = try makeScratchDirectory("bn-refused")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let directory = scratch.appendingPathComponent("c")
    let result = try DDPTrainProcess.run(
      Self.arguments(
        batch: 16, steps: 5, checkpoints: directory, extra: ["--batch-norm", "sync", "--simulate-workers", "2"]))
    #expect(result.status == 2, "\(result.output)")
    #expect(result.stderr.contains("--simulate-workers"), "\(result.stderr)")
    #expect(result.stderr.contains("--batch-norm sync"), "\(result.stderr)")
    #expect(!FileManager.default.fileExists(atPath: directory.path))
  }
}
