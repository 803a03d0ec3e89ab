import Foundation
import TestSupport
import Testing

/// A resumed run continues the same run: same K bit for bit; at another K with the same global batch, its steps
/// equal those of the K that wrote the checkpoint to 1e-5.
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
    // 64 steps per epoch: the checkpoint at step 80 is in the middle of epoch 2.
    let (full, interrupted, _) = try InterruptedRun.run(ranks: 2, in: scratch, failAt: 90, resumesAt: 80) {
      Self.arguments(batch: 16, checkpoints: $0)
    }
    let a = try finalParameters(in: full)
    let b = try finalParameters(in: interrupted)
    #expect(!a.isEmpty)
    #expect(bitwiseDifference(a, b) == nil)
  }

  @Test(
    "a checkpoint of 2 workers × 32 resumes with 4 workers × 16: one step from it equals one step of 2 × 32 (at steps 40 and 80; 1e-5)"
  )
  func otherWorldSizeSameGlobalBatch() throws {
    let scratch = try makeScratchDirectory("resume-other")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let full = scratch.appendingPathComponent("full")
    let reference = try DDPTrainProcess.mpirun(ranks: 2, Self.arguments(batch: 32, checkpoints: full))
    #expect(reference.status == 0, "\(reference.output)")
    // One step each from the checkpoints of steps 40 and 80 (both mid-epoch: 32 steps an epoch), not whole runs:
    // those part by rounding in jumps (`SingleStep`).
    for step in [40, 80] {
      let start = try SingleStep.parameters(at: step, in: full)
      let same = scratch.appendingPathComponent("k2-\(step)")
      let switched = scratch.appendingPathComponent("k4-\(step)")
      let a = try SingleStep.take(from: full, at: step, into: same, Self.arguments(batch: 32, checkpoints: same)) {
        try DDPTrainProcess.mpirun(ranks: 2, $0)
      }
      let b = try SingleStep.take(
        from: full, at: step, into: switched, Self.arguments(batch: 16, checkpoints: switched)
      ) {
        try DDPTrainProcess.mpirun(ranks: 4, $0)
      }
      #expect(b.result.stdout.contains("written by 2 workers × 32"), "\(b.result.stdout)")
      SingleStep.expectSameStep(b.parameters, a.parameters, from: start, "step \(step)")
    }
  }
}
