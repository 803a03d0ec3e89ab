import Foundation
import TestSupport
import Testing

/// A resumed run continues the same run: same K bit for bit, another K with the same global batch to 1e-5.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct ResumeTests {
  static func arguments(batch: Int, checkpoints: URL) -> [String] {
    [
      "--dataset", "synthetic", "--synthetic-train", "2048", "--model", "mlp:64,32", "--batch-size", String(batch),
      "--max-steps", "120", "--seed", "9", "--warmup-epochs", "1", "--checkpoint-every", "40",
      "--checkpoint-dir", checkpoints.path,
    ]
  }

  @Test("a run killed mid-epoch at step 90 and resumed ends bitwise where the uninterrupted run ends")
  func sameWorldSizeIsBitwise() throws {
    let scratch = try makeScratchDirectory("resume-same")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let full = scratch.appendingPathComponent("full")
    let interrupted = scratch.appendingPathComponent("interrupted")
    let reference = try DDPTrainProcess.mpirun(ranks: 2, Self.arguments(batch: 16, checkpoints: full))
    #expect(reference.status == 0, "\(reference.output)")

    // 64 steps per epoch: the checkpoint at step 80 is in the middle of epoch 2.
    let crashed = try DDPTrainProcess.mpirun(
      ranks: 2, Self.arguments(batch: 16, checkpoints: interrupted) + ["--inject-fault", "exit@1:90"])
    #expect(crashed.status != 0)
    let resumed = try DDPTrainProcess.mpirun(
      ranks: 2, Self.arguments(batch: 16, checkpoints: interrupted) + ["--resume"])
    #expect(resumed.status == 0, "\(resumed.output)")
    #expect(resumed.stdout.contains("at step 80"), "\(resumed.stdout)")
    let a = try finalParameters(in: full)
    let b = try finalParameters(in: interrupted)
    #expect(!a.isEmpty)
    #expect(bitwiseDifference(a, b) == nil)
  }

  @Test("a checkpoint of 2 workers × 32 resumes with 4 workers × 16 and matches to 1e-5")
  func otherWorldSizeSameGlobalBatch() throws {
    let scratch = try makeScratchDirectory("resume-other")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let full = scratch.appendingPathComponent("full")
    let switched = scratch.appendingPathComponent("switched")
    let reference = try DDPTrainProcess.mpirun(ranks: 2, Self.arguments(batch: 32, checkpoints: full))
    #expect(reference.status == 0, "\(reference.output)")
    let first = try DDPTrainProcess.mpirun(
      ranks: 2, Self.arguments(batch: 32, checkpoints: switched) + ["--inject-fault", "exit@0:50"])
    #expect(first.status != 0)
    let second = try DDPTrainProcess.mpirun(ranks: 4, Self.arguments(batch: 16, checkpoints: switched) + ["--resume"])
    #expect(second.status == 0, "\(second.output)")
    #expect(second.stdout.contains("written by 2 workers × 32"), "\(second.stdout)")
    let distance = relativeDistance(try finalParameters(in: switched), try finalParameters(in: full))
    #expect(distance < 1e-5, "relative distance \(distance)")
  }
}
