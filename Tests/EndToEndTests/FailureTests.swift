import Foundation
import TestSupport
import Testing

/// Any failure on any rank ends the whole job promptly, with a non-zero status and a message naming the rank.
/// Each case is made reproducible with the hidden `--inject-fault KIND@RANK:STEP`.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct FailureTests {
  static let tiny = [
    "--dataset", "synthetic", "--synthetic-train", "2048", "--synthetic-test", "256", "--model", "mlp:32",
    "--batch-size", "16", "--max-steps", "400",
  ]

  /// Runs 3 ranks with `fault`; returns the result after checking it failed within `seconds` of the fault.
  func runFaulty(_ fault: String, extra: [String] = [], within seconds: Double = 5) throws -> DDPTrainProcess.Result {
    let result = try DDPTrainProcess.mpirun(ranks: 3, Self.tiny + ["--inject-fault", fault] + extra, timeout: 60)
    #expect(!result.timedOut, "\(fault): the job did not end\n\(result.output)")
    #expect(result.status != 0, "\(fault): exit status 0\n\(result.output)")
    // Startup (MPI, data) takes about a second; the fault comes at step 5, moments later.
    #expect(result.seconds < seconds + 3, "\(fault): took \(result.seconds) s")
    return result
  }

  @Test func crashOnOneRank() throws {
    let result = try runFaulty("crash@1:5")
    #expect(result.output.contains("rank 1"), "\(result.output)")
  }

  @Test func exitOnOneRank() throws {
    let result = try runFaulty("exit@2:5")
    #expect(
      result.stderr.contains("error on rank 2: the process exited during training (at step 5)"), "\(result.output)")
  }

  @Test func sigkillOnOneRank() throws {
    let result = try runFaulty("kill@1:5")
    #expect(result.output.contains("rank 1"), "\(result.output)")
    #expect(result.output.contains("signal 9"), "\(result.output)")
  }

  /// SIGTERM is a stop request, not a failure: every rank stops after the step in which rank 2 got it, rank 0
  /// checkpoints that step, and every process (and so mpirun) exits 75.
  @Test func sigtermOnOneRankStopsTheJobWithACheckpoint() throws {
    let scratch = try makeScratchDirectory("stop")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let checkpoints = scratch.appendingPathComponent("ck")
    let result = try DDPTrainProcess.mpirun(
      ranks: 3, Self.tiny + ["--inject-fault", "term@2:5", "--checkpoint-dir", checkpoints.path], timeout: 60)
    #expect(result.status == 75, "\(result.output)")
    #expect(result.stdout.contains("stopped by a signal to another rank after step 6"), "\(result.output)")
    #expect(result.stdout.contains("--resume"), "\(result.output)")
    #expect(FileManager.default.fileExists(atPath: checkpoints.appendingPathComponent("step-00000006").path))
    let resumed = try DDPTrainProcess.mpirun(
      ranks: 3, Self.tiny + ["--checkpoint-dir", checkpoints.path, "--resume"], timeout: 60)
    #expect(resumed.status == 0, "\(resumed.output)")
    let reference = scratch.appendingPathComponent("reference")
    let uninterrupted = try DDPTrainProcess.mpirun(
      ranks: 3, Self.tiny + ["--checkpoint-dir", reference.path], timeout: 60)
    #expect(uninterrupted.status == 0, "\(uninterrupted.output)")
    #expect(bitwiseDifference(try finalParameters(in: checkpoints), try finalParameters(in: reference)) == nil)
  }

  @Test("a Swift error thrown on one rank is reported once, by that rank, and ends the job")
  func thrownErrorOnOneRank() throws {
    let result = try runFaulty("error@1:5")
    #expect(result.status == 1, "\(result.output)")
    #expect(
      result.stderr.contains("error on rank 1: (injected fault): simulated I/O error at step 5"), "\(result.output)")
    #expect(result.stderr.components(separatedBy: "ddp-train: error").count - 1 == 1, "\(result.stderr)")
  }

  @Test("ranks started with different settings are refused, naming the setting and the ranks")
  func ranksMustAgree() throws {
    let common = Self.tiny.map { $0 == "400" ? "3" : $0 }
    let command =
      [
        "mpirun", "--oversubscribe", "--timeout", "60", "-np", "1", DDPTrainProcess.binary,
      ] + common + [
        "--seed", "1", ":",
        "-np", "2", DDPTrainProcess.binary,
      ] + common + ["--seed", "2"]
    let result = try DDPTrainProcess.execute(command, timeout: 70, directory: nil)
    #expect(result.status == 2, "\(result.output)")
    #expect(result.stderr.contains("--seed on ranks 1, 2"), "\(result.output)")
  }

  @Test("a hung rank is caught by its watchdog, which names it")
  func hangOnOneRank() throws {
    let result = try runFaulty("hang@2:5", extra: ["--step-timeout", "2"], within: 6)
    #expect(result.status == 4, "\(result.output)")
    #expect(result.stderr.contains("rank 2 stalled"), "\(result.output)")
    #expect(result.stderr.contains("at step 5"), "\(result.output)")
  }

  @Test("NaN in the gradient stops training at that step with the lr and a hint")
  func nanStopsTraining() throws {
    let result = try runFaulty("nan@0:5")
    #expect(result.status == 3, "\(result.output)")
    #expect(result.stderr.contains("diverged at step 5"), "\(result.output)")
    #expect(result.stderr.contains("--warmup-epochs"), "\(result.output)")
    let reports = result.stderr.components(separatedBy: "ddp-train: error").count - 1
    #expect(reports == 1, "\(result.stderr)")
  }
}
