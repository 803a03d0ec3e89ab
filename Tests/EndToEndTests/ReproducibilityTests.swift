import Foundation
import TestSupport
import Testing

/// `--deterministic` and `--simulate-workers K`: the multi-rank bug reproduced in one process, bit for bit.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct ReproducibilityTests {
  static func arguments(_ checkpoints: URL) -> [String] {
    [
      "--dataset", "synthetic", "--synthetic-train", "3072", "--model", "mlp:64,32", "--batch-size", "16",
      "--max-steps", "120", "--seed", "5", "--checkpoint-every", "40", "--checkpoint-dir", checkpoints.path,
    ]
  }

  @Test(
    "mpirun -np 3 through shared memory (the default) and --deterministic over MPI equal --simulate-workers 3, bit for bit; one step of MPI's all-reduce from a common checkpoint equals one of --simulate-workers 3 (1e-5)"
  )
  func simulatedWorldEqualsRealWorld() throws {
    let scratch = try makeScratchDirectory("simulate")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let shared = scratch.appendingPathComponent("shared")
    let gathered = scratch.appendingPathComponent("gathered")
    let simulated = scratch.appendingPathComponent("simulated")
    let a = try DDPTrainProcess.mpirun(ranks: 3, Self.arguments(shared))
    #expect(a.status == 0, "\(a.output)")
    #expect(a.stdout.contains("gradients: shared memory (3 ranks on one host)"), "\(a.stdout)")
    let b = try DDPTrainProcess.mpirun(
      ranks: 3, Self.arguments(gathered) + ["--deterministic", "--no-shared-memory"])
    #expect(b.status == 0, "\(b.output)")
    #expect(b.stdout.contains("gradients: MPI all-gather, summed in rank order"), "\(b.stdout)")
    let c = try DDPTrainProcess.run(Self.arguments(simulated) + ["--simulate-workers", "3"])
    #expect(c.status == 0, "\(c.output)")
    #expect(c.stdout.contains("3 workers × 16 = global batch 48"), "\(c.stdout)")

    let simulatedWeights = try finalParameters(in: simulated)
    #expect(!simulatedWeights.isEmpty)
    #expect(bitwiseDifference(try finalParameters(in: shared), simulatedWeights) == nil)
    #expect(bitwiseDifference(try finalParameters(in: gathered), simulatedWeights) == nil)
    // MPI's own all-reduce computes the same steps up to summation order: one step from the simulated run's
    // checkpoints of steps 40 and 80 against one step of --simulate-workers 3 from them (whole runs part by rounding
    // in jumps, `SingleStep`).
    for step in [40, 80] {
      let mpi = scratch.appendingPathComponent("plain-\(step)")
      let alone = scratch.appendingPathComponent("simulated-\(step)")
      let d = try SingleStep.take(from: simulated, at: step, into: mpi, Self.arguments(mpi) + ["--no-shared-memory"]) {
        try DDPTrainProcess.mpirun(ranks: 3, $0)
      }
      #expect(d.result.stdout.contains("gradients: MPI all-reduce"), "\(d.result.stdout)")
      let e = try SingleStep.take(
        from: simulated, at: step, into: alone, Self.arguments(alone) + ["--simulate-workers", "3"]
      ) {
        try DDPTrainProcess.run($0)
      }
      SingleStep.expectSameStep(
        d.parameters, e.parameters, from: try SingleStep.parameters(at: step, in: simulated), "step \(step)")
    }
  }

  @Test("--simulate-workers under mpirun with several ranks is refused")
  func simulateNeedsOneProcess() throws {
    let scratch = try makeScratchDirectory("simulate-refused")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let result = try DDPTrainProcess.mpirun(
      ranks: 2, Self.arguments(scratch.appendingPathComponent("c")) + ["--simulate-workers", "2"])
    #expect(result.status == 2, "\(result.output)")
    #expect(result.stderr.contains("--simulate-workers"), "\(result.output)")
  }
}
