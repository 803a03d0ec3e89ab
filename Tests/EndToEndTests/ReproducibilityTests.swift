import Foundation
import TestSupport
import Testing

/// `--deterministic` and `--simulate-workers K`: the multi-rank bug reproduced in one process, bit for bit.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct ReproducibilityTests {
  static func arguments(_ checkpoints: URL) -> [String] {
    [
      "--dataset", "synthetic", "--synthetic-train", "3072", "--model", "mlp:64,32", "--batch-size", "16",
      "--max-steps", "120", "--seed", "5", "--checkpoint-dir", checkpoints.path,
    ]
  }

  @Test(
    "mpirun -np 3 through shared memory (the default) and --deterministic over MPI equal --simulate-workers 3, bit for bit"
  )
  func simulatedWorldEqualsRealWorld() throws {
    let scratch = try makeScratchDirectory("simulate")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let shared = scratch.appendingPathComponent("shared")
    let gathered = scratch.appendingPathComponent("gathered")
    let simulated = scratch.appendingPathComponent("simulated")
    let plain = scratch.appendingPathComponent("plain")
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
    let d = try DDPTrainProcess.mpirun(ranks: 3, Self.arguments(plain) + ["--no-shared-memory"])
    #expect(d.status == 0, "\(d.output)")
    #expect(d.stdout.contains("gradients: MPI all-reduce"), "\(d.stdout)")

    let simulatedWeights = try finalParameters(in: simulated)
    #expect(!simulatedWeights.isEmpty)
    #expect(bitwiseDifference(try finalParameters(in: shared), simulatedWeights) == nil)
    #expect(bitwiseDifference(try finalParameters(in: gathered), simulatedWeights) == nil)
    // MPI's own all-reduce computes the same run up to summation order.
    let plainWeights = try finalParameters(in: plain)
    #expect(relativeDistance(plainWeights, simulatedWeights) < 1e-5)
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
