import Foundation
import TestSupport
import Testing

/// `ddp-train launch --max-restarts N` relaunches a failed job from its newest checkpoint: a transient failure
/// (a crash that fires once, a rank killed from outside) ends with the weights of an uninterrupted run, bit for
/// bit; a failure that repeats at the same step makes launch give up at once.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct RestartTests {
  struct Job {
    let scratch: URL
    var checkpoints: URL { scratch.appendingPathComponent("ck") }
    var metrics: URL { scratch.appendingPathComponent("metrics.jsonl") }
    var config: String { scratch.appendingPathComponent("cluster.yaml").path }

    init(_ label: String) throws {
      scratch = try makeScratchDirectory(label)
      _ = try StopTests.clusterFile(in: scratch, checkpoints: checkpoints, metrics: metrics)
    }

    func launch(_ arguments: [String], during: (@Sendable (pid_t) -> Void)? = nil) throws -> DDPTrainProcess.Result {
      try DDPTrainProcess.run(["launch", "--config", config] + arguments, timeout: 150, during: during)
    }

    func restartEvents() throws -> [[String: Any]] { try JobWatching.events("restart", in: metrics) }
  }

  @Test("a crash that fires once: launch restarts from the newest checkpoint and ends bitwise like no crash")
  func onceCrashRestartsBitwise() throws {
    let job = try Job("restart-once")
    defer { try? FileManager.default.removeItem(at: job.scratch) }
    let result = try job.launch(["--max-restarts", "2", "--", "--inject-fault", "crash@1:1250:once"])
    #expect(result.status == 0, "\(result.output)")
    #expect(
      result.stderr.contains(
        "ddp-train launch: the job failed with status 132; restart 1 of 2 from the checkpoint of step 1200"),
      "a rank's trap (SIGILL) is mpirun's 128 + 4\n\(result.stderr)")
    #expect(result.stdout.contains("at step 1200"), "\(result.stdout)")
    let events = try job.restartEvents()
    #expect(events.count == 1)
    #expect(events.first?["resume_step"] as? Int == 1200, "\(events)")
    #expect(bitwiseDifference(try finalParameters(in: job.checkpoints), try StopTests.uninterrupted.get()) == nil)
  }

  @Test("a crash at the same step every time: launch gives up after one restart, saying why")
  func repeatingCrashGivesUp() throws {
    let job = try Job("restart-repeat")
    defer { try? FileManager.default.removeItem(at: job.scratch) }
    let result = try job.launch(["--max-restarts", "5", "--", "--inject-fault", "crash@1:1250"])
    #expect(result.status != 0, "\(result.output)")
    #expect(result.stderr.contains("restart 1 of 5 from the checkpoint of step 1200"), "\(result.stderr)")
    #expect(
      result.stderr.contains("again from step 1200 without writing a newer checkpoint; giving up"), "\(result.stderr)")
    #expect(!result.stderr.contains("restart 2 of 5"), "\(result.stderr)")
    #expect(try job.restartEvents().count == 1)
    #expect(JobWatching.steps(in: job.checkpoints).first == 1200)
  }

  @Test("a rank killed once from outside: launch restarts and the job ends bitwise like no kill")
  func externalKillRestartsBitwise() throws {
    let job = try Job("restart-kill")
    defer { try? FileManager.default.removeItem(at: job.scratch) }
    let checkpoints = job.checkpoints
    nonisolated(unsafe) var killedAfter: [Int] = []
    let result = try job.launch(["--max-restarts", "1"]) { launch in
      guard JobWatching.waitForFirstCheckpoint(in: checkpoints) else { return }
      guard let rank = JobWatching.ranks(of: launch, count: 2).last else { return }
      killedAfter = JobWatching.steps(in: checkpoints)
      kill(rank, SIGKILL)
    }
    #expect(!killedAfter.isEmpty, "the job ended before a checkpoint appeared\n\(result.output)")
    #expect(result.status == 0, "\(result.output)")
    #expect(result.stderr.contains("restart 1 of 1 from the checkpoint of step"), "\(result.stderr)")
    #expect(bitwiseDifference(try finalParameters(in: job.checkpoints), try StopTests.uninterrupted.get()) == nil)
  }

  @Test("without --max-restarts a failure is final, and statuses that a relaunch would repeat are never retried")
  func noRestartForFinalStatuses() throws {
    let job = try Job("restart-final")
    defer { try? FileManager.default.removeItem(at: job.scratch) }
    let crashed = try job.launch(["--", "--inject-fault", "crash@1:150"])
    #expect(crashed.status != 0)
    #expect(!crashed.stderr.contains("restart"), "\(crashed.stderr)")
    let diverged = try job.launch(["--max-restarts", "3", "--", "--inject-fault", "nan@0:150", "--start-fresh"])
    #expect(diverged.status == 3, "\(diverged.output)")
    #expect(!diverged.stderr.contains("restart 1"), "\(diverged.stderr)")
  }
}
