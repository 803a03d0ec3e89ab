import Foundation
import TestSupport
import Testing

/// `--resume-if-any`: the one command a requeued batch job runs each time. On an empty checkpoint directory it starts
/// fresh; once the directory holds checkpoints it resumes from the newest, bitwise.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct ResumeIfAnyTests {
  static func arguments(_ checkpoints: URL) -> [String] {
    [
      "--dataset", "synthetic", "--synthetic-train", "1024", "--synthetic-test", "256", "--model", "mlp:32",
      "--batch-size", "16", "--max-steps", "90", "--seed", "4", "--checkpoint-every", "30", "--checkpoint-dir",
      checkpoints.path, "--resume-if-any",
    ]
  }

  @Test(
    "the same command starts fresh, then after a crash resumes from step 60 and ends bitwise where a run without one ends"
  )
  func sameCommandTwice() throws {
    let scratch = try makeScratchDirectory("resume-if-any")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let full = scratch.appendingPathComponent("full")
    let reference = try DDPTrainProcess.mpirun(ranks: 2, Self.arguments(full))
    #expect(reference.status == 0, "\(reference.output)")
    #expect(!reference.stdout.contains("resume:"), "an empty directory starts fresh:\n\(reference.stdout)")
    let interrupted = scratch.appendingPathComponent("interrupted")
    let crashed = try DDPTrainProcess.mpirun(ranks: 2, Self.arguments(interrupted) + ["--inject-fault", "exit@1:70"])
    #expect(crashed.status != 0)
    let again = try DDPTrainProcess.mpirun(ranks: 2, Self.arguments(interrupted))
    #expect(again.status == 0, "\(again.output)")
    #expect(again.stdout.contains("at step 60"), "\(again.stdout)")
    #expect(bitwiseDifference(try finalParameters(in: full), try finalParameters(in: interrupted)) == nil)
  }

  @Test("with --start-fresh, or without --checkpoint-dir, it is an input error")
  func refusals() throws {
    let both = try DDPTrainProcess.run(
      Self.arguments(URL(fileURLWithPath: "/tmp/unused-\(UUID().uuidString)")) + ["--start-fresh"])
    #expect(both.status == 2 && both.stderr.contains("--resume-if-any"), "\(both.output)")
    let alone = try DDPTrainProcess.run(["--dataset", "synthetic", "--resume-if-any"])
    #expect(alone.status == 2 && alone.stderr.contains("a --checkpoint-dir to resume from"), "\(alone.output)")
  }
}
