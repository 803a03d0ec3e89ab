import Foundation
import TestSupport
import Testing

/// Everything that holds for the MLP holds for a convolutional network: the world-size equivalence (one step at a
/// time from common checkpoints, `SingleStep`), the shared-memory sum equal to --simulate-workers, bitwise resume
/// mid-epoch and resume at another K, LARS, eval and bench. A small network on the synthetic images (1x28x28), so each run takes a second or two.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct ConvolutionalModelTests {
  /// Every convolution method: im2col (one channel; a stride), Winograd F(4×4, 3×3) and F(4×4, 5×5) (8 input
  /// channels).
  static let model = "seq:conv4k3p1,relu,pool2,conv8k3s2p1,relu,conv8k3p1,relu,conv8k5p2,relu,flatten,linear10"
  /// conv 4·1·9+4, conv 8·4·9+8, conv 8·8·9+8, conv 8·8·25+8, linear 10·392+10.
  static let parameterCount = 40 + 296 + 584 + 1608 + 3930

  static func arguments(batch: Int, steps: Int = 120, checkpoints: URL, extra: [String] = []) -> [String] {
    [
      "--dataset", "synthetic", "--synthetic-train", "4096", "--synthetic-test", "512", "--model", model,
      "--batch-size", String(batch), "--max-steps", String(steps), "--seed", "3", "--lr", "0.05", "--base-batch", "64",
      "--warmup-epochs", "0.5", "--checkpoint-dir", checkpoints.path,
    ] + extra
  }

  @Test(
    "one step of 4 ranks × B=16 from a common checkpoint equals one step of 1 rank × B=64 (CNN, at steps 40 and 80; 1e-5 relative), and the step moved the weights"
  )
  func fourRanksEqualOneRank() throws {
    let scratch = try makeScratchDirectory("cnn-equivalence")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let reference = scratch.appendingPathComponent("k1")
    let one = try DDPTrainProcess.run(
      Self.arguments(batch: 64, checkpoints: reference, extra: ["--checkpoint-every", "40"]))
    #expect(one.status == 0, "\(one.output)")
    #expect(one.stdout.contains("(\(Self.parameterCount) parameters)"), "\(one.stdout)")
    // Whole runs part by rounding in jumps (a max-pool pair or a ReLU input near a tie, see `SingleStep`): one step
    // from each checkpoint on each side.
    for step in [40, 80] {
      let start = try SingleStep.parameters(at: step, in: reference)
      #expect(start.count == Self.parameterCount)
      let k1 = scratch.appendingPathComponent("k1-\(step)")
      let k4 = scratch.appendingPathComponent("k4-\(step)")
      let a = try SingleStep.take(from: reference, at: step, into: k1, Self.arguments(batch: 64, checkpoints: k1)) {
        try DDPTrainProcess.run($0)
      }
      let b = try SingleStep.take(from: reference, at: step, into: k4, Self.arguments(batch: 16, checkpoints: k4)) {
        try DDPTrainProcess.mpirun(ranks: 4, $0)
      }
      SingleStep.expectSameStep(b.parameters, a.parameters, from: start, "step \(step)")
    }
  }

  @Test("mpirun -np 3 through shared memory equals --simulate-workers 3 bit for bit (CNN)")
  func sharedMemoryEqualsSimulatedWorkers() throws {
    let scratch = try makeScratchDirectory("cnn-simulate")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let real = try DDPTrainProcess.mpirun(
      ranks: 3, Self.arguments(batch: 16, checkpoints: scratch.appendingPathComponent("real")))
    #expect(real.status == 0, "\(real.output)")
    #expect(real.stdout.contains("gradients: shared memory (3 ranks on one host)"), "\(real.stdout)")
    let simulated = try DDPTrainProcess.run(
      Self.arguments(batch: 16, checkpoints: scratch.appendingPathComponent("sim"), extra: ["--simulate-workers", "3"]))
    #expect(simulated.status == 0, "\(simulated.output)")
    let a = try finalParameters(in: scratch.appendingPathComponent("real"))
    #expect(!a.isEmpty)
    #expect(bitwiseDifference(a, try finalParameters(in: scratch.appendingPathComponent("sim"))) == nil)
  }

  @Test(
    "a CNN run resumed mid-epoch ends bit for bit where the uninterrupted run ends; at another K, one step from the checkpoint equals one step of the K that wrote it (1e-5)"
  )
  func resumeMidEpoch() throws {
    let scratch = try makeScratchDirectory("cnn-resume")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let whole = scratch.appendingPathComponent("whole")
    let cut = scratch.appendingPathComponent("cut")
    let other = scratch.appendingPathComponent("other")
    let same = scratch.appendingPathComponent("same")
    // 4096 / 32 = 128 steps per epoch: step 70 is mid-epoch. The resumed runs start from the whole run's
    // checkpoint of step 70 (the same run, with its lr schedule over 150 steps).
    let first = try DDPTrainProcess.mpirun(
      ranks: 2, Self.arguments(batch: 16, steps: 150, checkpoints: whole, extra: ["--checkpoint-every", "70"]))
    #expect(first.status == 0, "\(first.output)")
    try SingleStep.copyCheckpoint(70, from: whole, to: cut)
    let rest = try DDPTrainProcess.mpirun(
      ranks: 2, Self.arguments(batch: 16, steps: 150, checkpoints: cut, extra: ["--resume"]))
    #expect(rest.status == 0, "\(rest.output)")
    #expect(rest.stdout.contains("at step 70"), "\(rest.stdout)")
    let reference = try finalParameters(in: whole)
    #expect(bitwiseDifference(try finalParameters(in: cut), reference) == nil)
    // One rank with the same global batch continues the same run, up to summation order: its step from the
    // checkpoint equals the step 2 × 16 take from it (one step: whole runs part by rounding in jumps, `SingleStep`).
    let single = try SingleStep.take(
      from: whole, at: 70, into: other, Self.arguments(batch: 32, steps: 150, checkpoints: other)
    ) { try DDPTrainProcess.run($0) }
    let pair = try SingleStep.take(
      from: whole, at: 70, into: same, Self.arguments(batch: 16, steps: 150, checkpoints: same)
    ) { try DDPTrainProcess.mpirun(ranks: 2, $0) }
    SingleStep.expectSameStep(
      single.parameters, pair.parameters, from: try SingleStep.parameters(at: 70, in: whole), "step 70")
  }

  @Test(
    "LARS adapts every conv and linear weight; one step of K=2 from a common checkpoint equals one step of K=1 with the global batch (at steps 20 and 40; 1e-5)"
  )
  func larsOnConvolutions() throws {
    let scratch = try makeScratchDirectory("cnn-lars")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let lars = ["--optimizer", "lars", "--lr", "1"]
    let reference = scratch.appendingPathComponent("k1")
    let one = try DDPTrainProcess.run(
      Self.arguments(batch: 64, steps: 60, checkpoints: reference, extra: lars + ["--checkpoint-every", "20"]))
    #expect(one.status == 0, "\(one.output)")
    #expect(one.stdout.contains("lars:"), "\(one.stdout)")
    // One step each from the checkpoints of steps 20 and 40 (whole runs part by rounding in jumps, `SingleStep`).
    for step in [20, 40] {
      let k1 = scratch.appendingPathComponent("k1-\(step)")
      let k2 = scratch.appendingPathComponent("k2-\(step)")
      let a = try SingleStep.take(
        from: reference, at: step, into: k1, Self.arguments(batch: 64, steps: 60, checkpoints: k1, extra: lars)
      ) { try DDPTrainProcess.run($0) }
      let b = try SingleStep.take(
        from: reference, at: step, into: k2, Self.arguments(batch: 32, steps: 60, checkpoints: k2, extra: lars)
      ) { try DDPTrainProcess.mpirun(ranks: 2, $0) }
      SingleStep.expectSameStep(
        b.parameters, a.parameters, from: try SingleStep.parameters(at: step, in: reference), "step \(step)")
    }
  }

  @Test("resuming a checkpoint into another architecture is an input error naming both")
  func resumeIntoAnotherArchitecture() throws {
    let scratch = try makeScratchDirectory("cnn-architecture")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let directory = scratch.appendingPathComponent("c")
    let first = try DDPTrainProcess.run(Self.arguments(batch: 32, steps: 5, checkpoints: directory))
    #expect(first.status == 0, "\(first.output)")
    let other = try DDPTrainProcess.run(
      Self.arguments(batch: 32, steps: 10, checkpoints: directory, extra: ["--resume"]).map {
        $0 == Self.model ? "seq:conv4k5p2,relu,pool2,flatten,linear10" : $0
      })
    #expect(other.status == 2, "\(other.output)")
    #expect(other.stderr.contains("conv4k3p1"), "\(other.stderr)")
    #expect(other.stderr.contains("conv4k5p2"), "\(other.stderr)")
    let mlp = try DDPTrainProcess.run(
      Self.arguments(batch: 32, steps: 10, checkpoints: directory, extra: ["--resume"]).map {
        $0 == Self.model ? "mlp" : $0
      })
    #expect(mlp.status == 2, "\(mlp.output)")
    #expect(mlp.stderr.contains("mlp 784-256-128-10"), "\(mlp.stderr)")
  }

  @Test("eval reads a CNN checkpoint and gives the accuracy training reported; bench profiles the conv GEMMs")
  func evalAndBench() throws {
    let scratch = try makeScratchDirectory("cnn-eval")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let directory = scratch.appendingPathComponent("c")
    let train = try DDPTrainProcess.run(Self.arguments(batch: 32, steps: 40, checkpoints: directory))
    #expect(train.status == 0, "\(train.output)")
    let reported = train.stdout.split(separator: "\n").last { $0.hasPrefix("done:") }.map(String.init) ?? ""
    let eval = try DDPTrainProcess.run(["eval", "--checkpoint", directory.path])
    #expect(eval.status == 0, "\(eval.output)")
    // "done: 40 steps in 0.3 s; test accuracy 0.7461, ..." and "test loss 0.6 test accuracy 0.7461 ...".
    let accuracy = reported.components(separatedBy: "test accuracy ").last?.prefix(6) ?? "?"
    #expect(eval.stdout.contains("test accuracy \(accuracy)"), "\(reported)\n\(eval.stdout)")
    let bench = try DDPTrainProcess.mpirun(
      ranks: 2,
      [
        "bench", "--dataset", "synthetic", "--synthetic-train", "1024", "--model", Self.model, "--batch-size", "16",
        "--windows", "1", "--warmup", "1",
      ])
    #expect(bench.status == 0, "\(bench.output)")
    #expect(bench.stdout.contains("0.fwd NN m=4 "), "\(bench.stdout)")
    #expect(bench.stdout.contains("3.dx TN"), "\(bench.stdout)")
    #expect(bench.stdout.contains("alone"), "\(bench.stdout)")
  }
}
