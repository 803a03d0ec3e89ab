import Foundation
import TestSupport
import Testing

/// docs/INTERFACE.md: K ranks with batch B compute the same step as one process with batch K·B, up to summation order
/// (checked one step at a time from common checkpoints, see `SingleStep`); every rank holds the same parameters; a
/// world of one without mpirun equals `mpirun -np 1` bit for bit.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct WorldSizeEquivalenceTests {
  /// A short synthetic run with momentum, weight decay, warmup and cosine decay all active.
  static func arguments(batch: Int, checkpoints: URL, extra: [String] = []) -> [String] {
    [
      "--dataset", "synthetic", "--batch-size", String(batch), "--max-steps", "200", "--seed", "7",
      "--lr", "0.05", "--base-batch", "64", "--warmup-epochs", "0.5", "--schedule", "cosine",
      "--momentum", "0.9", "--weight-decay", "5e-4", "--checkpoint-dir", checkpoints.path,
    ] + extra
  }

  @Test(
    "one step of 4 ranks × B=16 from a common checkpoint equals one step of 1 rank × B=64 (at steps 60, 120, 180 of 200; 1e-5 relative)"
  )
  func fourRanksEqualOneRankWithTheGlobalBatch() throws {
    let scratch = try makeScratchDirectory("equivalence")
    defer { try? FileManager.default.removeItem(at: scratch) }
    // The reference run: 1 rank × B=64 (without mpirun, which equals `mpirun -np 1` bit for bit, as tested below),
    // a checkpoint every 60 steps. From each (in warmup, mid-cosine and near the end of cosine) each side takes one
    // step with the run's own lr; whole runs part by rounding in jumps (see `SingleStep`).
    let reference = scratch.appendingPathComponent("k1")
    let single = try DDPTrainProcess.run(
      Self.arguments(batch: 64, checkpoints: reference, extra: ["--checkpoint-every", "60"]))
    #expect(single.status == 0, "\(single.output)")
    for step in [60, 120, 180] {
      let start = try SingleStep.parameters(at: step, in: reference)
      #expect(start.count == 235_146)
      let one = scratch.appendingPathComponent("k1-\(step)")
      let four = scratch.appendingPathComponent("k4-\(step)")
      let a = try SingleStep.take(from: reference, at: step, into: one, Self.arguments(batch: 64, checkpoints: one)) {
        try DDPTrainProcess.run($0)
      }
      let b = try SingleStep.take(
        from: reference, at: step, into: four, Self.arguments(batch: 16, checkpoints: four)
      ) { try DDPTrainProcess.mpirun(ranks: 4, $0) }
      #expect(b.result.stdout.contains("4 workers × 16 = global batch 64"), "\(b.result.stdout)")
      SingleStep.expectSameStep(b.parameters, a.parameters, from: start, "step \(step)")
    }
  }

  @Test("every rank holds identical parameters, and a divergent rank is caught")
  func ranksStayIdentical() throws {
    let scratch = try makeScratchDirectory("consistency")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let good = try DDPTrainProcess.mpirun(
      ranks: 3,
      Self.arguments(
        batch: 8, checkpoints: scratch.appendingPathComponent("good"), extra: ["--check-consistency", "1"]
      )
      .map { $0 == "200" ? "40" : $0 })
    #expect(good.status == 0, "\(good.output)")
    // The check must be able to fail: perturb one parameter on rank 2 at step 10.
    let bad = try DDPTrainProcess.mpirun(
      ranks: 3,
      Self.arguments(
        batch: 8, checkpoints: scratch.appendingPathComponent("bad"),
        extra: ["--check-consistency", "5", "--inject-fault", "perturb@2:10"]
      ).map { $0 == "200" ? "40" : $0 })
    #expect(bad.status != 0)
    #expect(bad.stderr.contains("rank 2"), "\(bad.output)")
    #expect(bad.stderr.contains("parameters"), "\(bad.output)")
  }

  @Test("a run without mpirun equals mpirun -np 1 bit for bit")
  func singleProcessEqualsMpirunOfOne() throws {
    let scratch = try makeScratchDirectory("singleton")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let alone = scratch.appendingPathComponent("alone")
    let underMPI = scratch.appendingPathComponent("mpi")
    let first = try DDPTrainProcess.run(Self.arguments(batch: 32, checkpoints: alone))
    #expect(first.status == 0, "\(first.output)")
    let second = try DDPTrainProcess.mpirun(ranks: 1, Self.arguments(batch: 32, checkpoints: underMPI))
    #expect(second.status == 0, "\(second.output)")
    let a = try finalParameters(in: alone)
    let b = try finalParameters(in: underMPI)
    #expect(!a.isEmpty)
    #expect(bitwiseDifference(a, b) == nil)
  }
}
