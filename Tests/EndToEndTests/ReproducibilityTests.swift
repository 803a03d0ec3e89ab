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

  @Test("mpirun -np 3 --deterministic equals --simulate-workers 3 in one process, bit for bit")
  func simulatedWorldEqualsRealWorld() throws {
    let scratch = try makeScratchDirectory("simulate")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let real = scratch.appendingPathComponent("real")
    let simulated = scratch.appendingPathComponent("simulated")
    let plain = scratch.appendingPathComponent("plain")
    let a = try DDPTrainProcess.mpirun(ranks: 3, Self.arguments(real) + ["--deterministic"])
    #expect(a.status == 0, "\(a.output)")
    let b = try DDPTrainProcess.run(Self.arguments(simulated) + ["--simulate-workers", "3"])
    #expect(b.status == 0, "\(b.output)")
    #expect(b.stdout.contains("3 workers × 16 = global batch 48"), "\(b.stdout)")
    let c = try DDPTrainProcess.mpirun(ranks: 3, Self.arguments(plain))
    #expect(c.status == 0, "\(c.output)")

    let realWeights = try finalParameters(in: real)
    let simulatedWeights = try finalParameters(in: simulated)
    #expect(!realWeights.isEmpty)
    #expect(bitwiseDifference(realWeights, simulatedWeights) == nil)
    // The ordinary all-reduce computes the same run up to summation order.
    let plainWeights = try finalParameters(in: plain)
    #expect(relativeDistance(plainWeights, realWeights) < 1e-5)
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
