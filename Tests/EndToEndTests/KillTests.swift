import Checkpoints
import Foundation
import TestSupport
import Testing

/// Kill the job (SIGKILL to mpirun, or to one rank) at many moments, many of them during a checkpoint write:
/// every checkpoint under a final name must verify, the newest must load, and --resume must continue.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct KillTests {
  /// Process ids whose command line mentions `marker`, with their program name.
  static func processes(mentioning marker: String) -> [(pid: Int32, name: String)] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap { entry in
      guard let pid = Int32(entry),
        let commandLine = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
        String(decoding: commandLine, as: UTF8.self).contains(marker),
        let name = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8)
      else { return nil }
      return (pid, name.trimmingCharacters(in: .whitespacesAndNewlines))
    }
  }

  @Test("SIGKILL in the middle of a checkpoint write: the half-written one is never used, the previous one resumes")
  func killInsideAWrite() throws {
    let scratch = try makeScratchDirectory("killwrite")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let directory = scratch.appendingPathComponent("checkpoints")
    let arguments = [
      "--dataset", "synthetic", "--synthetic-train", "2048", "--batch-size", "16", "--max-steps", "30",
      "--checkpoint-every", "10", "--checkpoint-dir", directory.path,
    ]
    let killed = try DDPTrainProcess.mpirun(ranks: 2, arguments + ["--inject-fault", "killwrite@0:20"], timeout: 60)
    #expect(killed.status != 0)
    #expect(killed.output.contains("signal 9"), "\(killed.output)")
    // The write of step 20 stopped after model.safetensors: only its temporary folder exists, with that one file.
    let entries = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    let temporary = entries.filter { $0.hasPrefix(".tmp-step-00000020") }
    #expect(temporary.count == 1, "\(entries)")
    if let folder = temporary.first {
      let files = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent(folder).path)
      #expect(files == ["model.safetensors"], "\(files)")
    }
    let checkpoints = CheckpointDirectory(path: directory.path)
    #expect(try checkpoints.list().map(\.step) == [10])
    let resumed = try DDPTrainProcess.mpirun(ranks: 2, arguments + ["--resume"], timeout: 60)
    #expect(resumed.status == 0, "\(resumed.output)")
    #expect(resumed.stdout.contains("at step 10"), "\(resumed.stdout)")
    #expect(try checkpoints.list().map(\.step) == [30, 20, 10])
  }

  @Test("SIGKILL at 8 random moments: no corrupt checkpoint is ever listed, the newest loads, resume works")
  func killAtRandomMoments() throws {
    let scratch = try makeScratchDirectory("kill")
    defer { try? FileManager.default.removeItem(at: scratch) }
    var generator = SystemRandomNumberGenerator()
    var leftoverTemporaryFolders = 0
    for round in 0..<8 {
      let directory = scratch.appendingPathComponent("run\(round)")
      let arguments = [
        "--dataset", "synthetic", "--synthetic-train", "4096", "--batch-size", "8", "--max-steps", "1000000",
        "--checkpoint-every", "1", "--keep", "2", "--checkpoint-dir", directory.path,
      ]
      let process = Process()
      process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      process.arguments = ["mpirun", "--oversubscribe", "-np", "2", DDPTrainProcess.binary] + arguments
      process.environment = DDPTrainProcess.environment
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      try process.run()
      // Wait until at least one checkpoint exists, then a random extra moment.
      let start = Date()
      while (try? CheckpointDirectory(path: directory.path).list().isEmpty) ?? true,
        Date().timeIntervalSince(start) < 20
      {
        usleep(20_000)
      }
      usleep(UInt32.random(in: 0..<400_000, using: &generator))
      if round % 2 == 0 {
        kill(process.processIdentifier, SIGKILL)
      } else if let rank = Self.processes(mentioning: directory.path).first(where: { $0.name == "ddp-train" }) {
        kill(rank.pid, SIGKILL)
      }
      // The whole job must be gone promptly.
      let killed = Date()
      while !Self.processes(mentioning: directory.path).isEmpty, Date().timeIntervalSince(killed) < 10 {
        usleep(50_000)
      }
      #expect(Self.processes(mentioning: directory.path).isEmpty, "round \(round): ranks still running after 10 s")
      process.waitUntilExit()

      let locations = try CheckpointDirectory(path: directory.path).list()
      #expect(!locations.isEmpty)
      try JobWatching.verifyAll(in: directory)
      leftoverTemporaryFolders += JobWatching.temporaryFolders(in: directory).count

      let evaluation = try DDPTrainProcess.run(["eval", "--checkpoint", directory.path])
      #expect(evaluation.status == 0, "round \(round): \(evaluation.output)")
      let newest = locations[0].step
      let resumed = try DDPTrainProcess.mpirun(
        ranks: 2, arguments.map { $0 == "1000000" ? String(newest + 3) : $0 } + ["--resume"], timeout: 60)
      #expect(resumed.status == 0, "round \(round): \(resumed.output)")
      #expect(resumed.stdout.contains("resume: from \(locations[0].path) at step \(newest)"), "\(resumed.stdout)")
    }
    // Informational: how many kills landed inside a write (their temporary folders stay behind, ignored).
    print("KillTests: \(leftoverTemporaryFolders) of 8 kills interrupted a checkpoint write")
  }
}
