import Checkpoints
import Foundation
import TestSupport
import Testing

/// Dropout's masks follow the sample's position in the global batch, so the data-parallel guarantees hold with it:
/// one step of K workers equals one step of one process with the global batch, a resumed run is bitwise the
/// uninterrupted one, and `--simulate-workers` is bitwise the shared-memory run.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct DropoutTrainingTests {
  static let model = "seq:linear64,relu,dropout0.3,linear32,relu,dropout0.2,linear10"

  static func arguments(batch: Int, checkpoints: URL, extra: [String] = []) -> [String] {
    [
      "--dataset", "synthetic", "--synthetic-train", "2048", "--synthetic-test", "512", "--model", model,
      "--batch-size", String(batch),
      "--max-steps", "120", "--seed", "11", "--warmup-epochs", "1", "--checkpoint-every", "40",
      "--checkpoint-dir", checkpoints.path, "--label-smoothing", "0.1",
    ] + extra
  }

  @Test("one step of 2 workers × 16 from a common checkpoint equals one step of 1 × 32 (at steps 40 and 80; 1e-5)")
  func twoWorkersEqualOneWithTheGlobalBatch() throws {
    let scratch = try makeScratchDirectory("dropout-k")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let full = scratch.appendingPathComponent("full")
    let reference = try DDPTrainProcess.run(Self.arguments(batch: 32, checkpoints: full))
    #expect(reference.status == 0, "\(reference.output)")
    for step in [40, 80] {
      let start = try SingleStep.parameters(at: step, in: full)
      let one = scratch.appendingPathComponent("k1-\(step)")
      let two = scratch.appendingPathComponent("k2-\(step)")
      let a = try SingleStep.take(from: full, at: step, into: one, Self.arguments(batch: 32, checkpoints: one)) {
        try DDPTrainProcess.run($0)
      }
      let b = try SingleStep.take(from: full, at: step, into: two, Self.arguments(batch: 16, checkpoints: two)) {
        try DDPTrainProcess.mpirun(ranks: 2, $0)
      }
      SingleStep.expectSameStep(b.parameters, a.parameters, from: start, "dropout step \(step)")
    }
  }

  @Test("a run killed at step 90 and resumed from 80 ends bitwise where the uninterrupted run ends")
  func resumeIsBitwise() throws {
    let scratch = try makeScratchDirectory("dropout-resume")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let (full, interrupted, reference) = try InterruptedRun.run(ranks: 2, in: scratch, failAt: 90, resumesAt: 80) {
      Self.arguments(batch: 16, checkpoints: $0)
    }
    #expect(bitwiseDifference(try finalParameters(in: full), try finalParameters(in: interrupted)) == nil)

    // `eval` turns dropout off, as the run's test pass did: the same accuracy.
    let reported = try #require(reference.stdout.split(separator: "\n").last { $0.hasPrefix("done:") })
    let accuracy = try #require(reported.split(separator: " ").firstIndex(of: "accuracy")).advanced(by: 1)
    let value = reported.split(separator: " ")[accuracy].trimmingCharacters(in: .punctuationCharacters)
    let evaluated = try DDPTrainProcess.run(["eval", "--checkpoint", full.path])
    #expect(evaluated.status == 0, "\(evaluated.output)")
    #expect(evaluated.stdout.contains(value), "run: \(reported); eval: \(evaluated.stdout)")
  }

  @Test("3 ranks with dropout equal --simulate-workers 3 bit for bit")
  func simulatedWorkersAreBitwise() throws {
    let scratch = try makeScratchDirectory("dropout-simulate")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let real = scratch.appendingPathComponent("real")
    let simulated = scratch.appendingPathComponent("simulated")
    let a = try DDPTrainProcess.mpirun(ranks: 3, Self.arguments(batch: 16, checkpoints: real))
    #expect(a.status == 0, "\(a.output)")
    let b = try DDPTrainProcess.run(
      Self.arguments(batch: 16, checkpoints: simulated, extra: ["--simulate-workers", "3"]))
    #expect(b.status == 0, "\(b.output)")
    #expect(bitwiseDifference(try finalParameters(in: real), try finalParameters(in: simulated)) == nil)
  }
}
