import Foundation
import TestSupport
import Testing

/// The disk under a running job fails it: full (a small tmpfs), remounted read-only, the checkpoint directory
/// removed, the metrics file out of space. Each gives one message naming the file, status 1 (a failure while
/// training; 2 is for input errors, where nothing was written), no rank left waiting, and the earlier checkpoints
/// intact. Also: one job per checkpoint directory, and --resume past the run's end.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct StorageFaultTests {
  static let run = StopTests.run
  /// model.safetensors + optimizer.safetensors + state.json of `run`'s mlp:32 (784-32-10).
  static let checkpointBytes = 102_496 + 102_256 + 2_300

  /// Runs 2 ranks writing checkpoints to `checkpoints` and checks the failure: status 1, quickly, one message
  /// holding `expected` and the newest complete checkpoint, no temporary folder left, every checkpoint verifying.
  func expectCheckpointFailure(
    _ checkpoints: URL, expected: String, extra: [String] = [], during: (@Sendable (pid_t) -> Void)? = nil
  ) throws -> DDPTrainProcess.Result {
    let result = try DDPTrainProcess.mpirun(
      ranks: 2, Self.run + ["--checkpoint-dir", checkpoints.path] + extra, timeout: 120, during: during)
    #expect(!result.timedOut, "\(result.output)")
    #expect(result.status == 1, "\(result.output)")
    #expect(result.stderr.contains(expected), "\(result.stderr)")
    #expect(result.stderr.components(separatedBy: "ddp-train: error").count - 1 == 1, "\(result.stderr)")
    return result
  }

  @Test(
    "a full disk while a checkpoint is written: status 1, the message names the file, earlier checkpoints intact",
    .enabled(if: ScratchFileSystem.available, "needs root to mount a small tmpfs"))
  func diskFullDuringACheckpoint() throws {
    // Room for two checkpoints and part of a third.
    let disk = try ScratchFileSystem(bytes: Self.checkpointBytes * 5 / 2, label: "full")
    defer { disk.unmount() }
    let checkpoints = disk.mountPoint.appendingPathComponent("ck")
    let result = try expectCheckpointFailure(
      checkpoints, expected: "No space left on device while writing the checkpoint of step 300",
      extra: ["--keep", "10"])
    #expect(result.stderr.contains("\(checkpoints.path)/.tmp-step-00000300"), "\(result.stderr)")
    #expect(result.stderr.contains("the newest complete checkpoint is \(checkpoints.path)/step-00000200"))
    #expect(JobWatching.temporaryFolders(in: checkpoints).isEmpty, "the half-written folder should be removed")
    #expect(try JobWatching.verifyAll(in: checkpoints) == [200, 100])
  }

  @Test(
    "the checkpoint disk remounted read-only during the run: status 1, earlier checkpoints intact",
    .enabled(if: ScratchFileSystem.available, "needs root to mount a small tmpfs"))
  func diskReadOnlyDuringTheRun() throws {
    let disk = try ScratchFileSystem(bytes: 16 << 20, label: "ro")
    defer { disk.unmount() }
    let checkpoints = disk.mountPoint.appendingPathComponent("ck")
    _ = try expectCheckpointFailure(checkpoints, expected: "Read-only file system") { _ in
      guard JobWatching.waitForFirstCheckpoint(in: checkpoints, jitter: 0) else { return }
      // EBUSY while a checkpoint file is open for writing: try again until it lands between two writes.
      #expect(JobWatching.wait(timeout: 5) { disk.makeReadOnly() })
    }
    #expect(!(try JobWatching.verifyAll(in: checkpoints)).isEmpty)
  }

  @Test("the checkpoint directory removed during the run: status 1, saying so, and not silently recreated")
  func checkpointDirectoryRemoved() throws {
    let scratch = try makeScratchDirectory("removed")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let checkpoints = scratch.appendingPathComponent("ck")
    _ = try expectCheckpointFailure(checkpoints, expected: "the checkpoint directory was removed during the run") { _ in
      guard JobWatching.waitForFirstCheckpoint(in: checkpoints, jitter: 0) else { return }
      // This run writes a checkpoint every few milliseconds: a removal that meets one being written fails
      // ("directory not empty") and leaves the directory. Try until one removal succeeds; never after that, or a
      // directory the job recreated would be removed too and go unnoticed.
      #expect(JobWatching.wait(timeout: 5) { (try? FileManager.default.removeItem(at: checkpoints)) != nil })
    }
    #expect(!FileManager.default.fileExists(atPath: checkpoints.path))
  }

  /// `rm -r` deletes a directory's contents before the directory: a write that loses its folder while the
  /// directory is still there is the same removal, and says so.
  @Test("the checkpoint being written is removed (a removal under way): status 1, saying the directory was removed")
  func checkpointRemovedWhileWritten() throws {
    let scratch = try makeScratchDirectory("removing")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let checkpoints = scratch.appendingPathComponent("ck")
    let result = try expectCheckpointFailure(
      checkpoints, expected: "the checkpoint directory was removed during the run",
      extra: ["--inject-fault", "rmwrite@0:300"])
    #expect(result.stderr.contains("the checkpoint of step 300 cannot be saved"), "\(result.stderr)")
  }

  @Test(
    "the metrics file runs out of space: status 1, the message names the file",
    .enabled(if: ScratchFileSystem.available, "needs root to mount a small tmpfs"))
  func metricsDiskFull() throws {
    let disk = try ScratchFileSystem(bytes: 16 << 10, label: "metrics")
    defer { disk.unmount() }
    let metrics = disk.mountPoint.appendingPathComponent("metrics.jsonl")
    let result = try DDPTrainProcess.mpirun(
      ranks: 2, Self.run + ["--metrics", metrics.path, "--log-every", "5"], timeout: 120)
    #expect(!result.timedOut, "\(result.output)")
    #expect(result.status == 1, "\(result.output)")
    #expect(
      result.stderr.contains("\(metrics.path): No space left on device (appending its "), "\(result.stderr)")
    #expect(result.stderr.components(separatedBy: "ddp-train: error").count - 1 == 1, "\(result.stderr)")
    // Every line that made it is whole JSON (one write(2) per line).
    for line in try String(contentsOf: metrics, encoding: .utf8).split(separator: "\n") {
      #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "\(line)")
    }
  }

  @Test("a second job on a running job's checkpoint directory is refused with exit 2, naming the first")
  func secondJobIsRefused() throws {
    let scratch = try makeScratchDirectory("lock")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let checkpoints = scratch.appendingPathComponent("ck")
    nonisolated(unsafe) var second: DDPTrainProcess.Result?
    nonisolated(unsafe) var listingBefore: [String] = []
    nonisolated(unsafe) var listingAfter: [String] = []
    nonisolated(unsafe) var firstPid: pid_t = 0
    let first = try DDPTrainProcess.run(
      Self.run.map { $0 == "36000" ? "1000000" : $0 } + ["--checkpoint-dir", checkpoints.path], timeout: 120
    ) { firstJob in
      firstPid = firstJob
      defer { kill(firstJob, SIGTERM) }
      guard JobWatching.waitForFirstCheckpoint(in: checkpoints, jitter: 0) else { return }
      // The first job keeps writing; the second must not add anything of its own (no .tmp folder, no marker).
      kill(firstJob, SIGSTOP)
      defer { kill(firstJob, SIGCONT) }
      listingBefore = (try? FileManager.default.contentsOfDirectory(atPath: checkpoints.path).sorted()) ?? []
      second = try? DDPTrainProcess.mpirun(
        ranks: 2, Self.run + ["--checkpoint-dir", checkpoints.path, "--resume", "--max-steps", "100"], timeout: 60)
      listingAfter = (try? FileManager.default.contentsOfDirectory(atPath: checkpoints.path).sorted()) ?? []
    }
    #expect(first.status == 75, "the first job should stop on its SIGTERM\n\(first.output)")
    let refused = try #require(second)
    #expect(refused.status == 2, "\(refused.output)")
    #expect(
      refused.stderr.contains("\(checkpoints.path): is in use by another job that is still running"),
      "\(refused.stderr)")
    #expect(refused.stderr.contains("(pid \(firstPid) on "), "the message names the running job\n\(refused.stderr)")
    #expect(listingAfter == listingBefore)
  }

  @Test("a lock left by a job that was killed is stale: the next job takes it over and resumes")
  func staleLockIsTakenOver() throws {
    let scratch = try makeScratchDirectory("stale-lock")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let checkpoints = scratch.appendingPathComponent("ck")
    let killed = try DDPTrainProcess.run(
      Self.run + ["--checkpoint-dir", checkpoints.path], timeout: 120
    ) { job in
      guard JobWatching.waitForFirstCheckpoint(in: checkpoints, jitter: 0) else { return }
      kill(job, SIGKILL)
    }
    #expect(killed.signal == SIGKILL, "\(killed.output)")
    let lock = checkpoints.appendingPathComponent(".lock").path
    #expect(FileManager.default.fileExists(atPath: lock), "the killed job's lock file stays behind")
    let resumed = try DDPTrainProcess.mpirun(
      ranks: 2, Self.run + ["--checkpoint-dir", checkpoints.path, "--resume", "--max-steps", "400"], timeout: 60)
    #expect(resumed.status == 0, "\(resumed.output)")
    #expect(JobWatching.steps(in: checkpoints).first == 400)
  }

  @Test("--resume from a checkpoint already past the run's end: exit 2, saying what to pass, nothing written")
  func resumePastTheEnd() throws {
    let scratch = try makeScratchDirectory("past-end")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let checkpoints = scratch.appendingPathComponent("ck")
    let trained = try DDPTrainProcess.mpirun(
      ranks: 2, Self.run + ["--checkpoint-dir", checkpoints.path, "--max-steps", "300"], timeout: 60)
    #expect(trained.status == 0, "\(trained.output)")
    func listing() throws -> [String] {
      try FileManager.default.subpathsOfDirectory(atPath: checkpoints.path).sorted().map { name in
        let attributes = try FileManager.default.attributesOfItem(atPath: checkpoints.appendingPathComponent(name).path)
        return "\(name) \(attributes[.size] ?? 0) \(attributes[.modificationDate] ?? 0)"
      }
    }
    let before = try listing()
    let result = try DDPTrainProcess.mpirun(
      ranks: 2, Self.run + ["--checkpoint-dir", checkpoints.path, "--max-steps", "200", "--resume"], timeout: 60)
    #expect(result.status == 2, "\(result.output)")
    #expect(result.stderr.contains("is at step 300, already past this run's last step 200"), "\(result.stderr)")
    #expect(!result.stderr.contains("nan"), "\(result.stderr)")
    #expect(try listing() == before)
  }
}
