import Foundation
import TestSupport
import Testing

/// A real SLURM of `launch/slurm-cluster` (munged, slurmctld, one slurmd per namespace host), for tests: up for
/// each test, down at its end, also when it fails.
final class SlurmCluster {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
  static let script = root.appendingPathComponent("launch/slurm-cluster").path
  static let jobScript = root.appendingPathComponent("launch/ddp-train.sbatch").path

  /// Root and namespace hosts; `up` installs SLURM and munge when they are missing.
  static var available: Bool { NamespaceCluster.available }

  let name: String
  /// What the tests' commands get besides `DDPTrainProcess.environment`: the cluster's slurm.conf, the binary.
  let environment: [String: String]

  init(hosts: Int) throws {
    let tag = Int(getpid()) % 200 + 20
    name = "dts\(tag)"
    _ = NamespaceCluster.shell([Self.script, "down", "--name", name])
    let up = NamespaceCluster.shell([
      Self.script, "up", "--name", name, "--hosts", String(hosts), "--subnet", "10.216.\(tag)",
    ])
    guard up.status == 0 else {
      throw NSError(domain: "SlurmCluster", code: Int(up.status), userInfo: [NSLocalizedDescriptionKey: up.output])
    }
    let conf =
      NamespaceCluster.shell([Self.script, "where", "--name", name]).output
      .trimmingCharacters(in: .whitespacesAndNewlines) + "/slurm.conf"
    environment = [
      "SLURM_CONF": conf, "DDP_TRAIN": DDPTrainProcess.binary, "DDP_TRAIN_MPIRUN_ARGS": "--bind-to none",
    ]
  }

  deinit { _ = NamespaceCluster.shell([Self.script, "down", "--name", name]) }

  func run(_ command: [String], in directory: URL? = nil) throws -> DDPTrainProcess.Result {
    try DDPTrainProcess.execute(command, timeout: 60, directory: directory, extraEnvironment: environment)
  }

  /// `sbatch --parsable launch/ddp-train.sbatch arguments...` from `directory`; the job's ID.
  func submit(
    _ arguments: [String], in directory: URL, extra: [String: String] = [:], sbatchOptions: [String] = []
  ) throws -> String {
    let result = try DDPTrainProcess.execute(
      ["sbatch", "--parsable"] + sbatchOptions + [Self.jobScript] + arguments, timeout: 60, directory: directory,
      extraEnvironment: environment.merging(extra) { _, new in new })
    try #require(result.status == 0, "sbatch: \(result.output)")
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// `scontrol show job`'s fields (JobState, Restarts, ExitCode, Reason, ...).
  func job(_ id: String) throws -> [String: String] {
    let text = try run(["scontrol", "show", "job", id]).stdout
    var fields: [String: String] = [:]
    for word in text.split(whereSeparator: \.isWhitespace) {
      let parts = word.split(separator: "=", maxSplits: 1)
      if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
    }
    return fields
  }

  /// Polls until `done(fields)` or `timeout` seconds; the last fields and the seconds it took.
  func wait(for id: String, timeout: Double, until done: ([String: String]) -> Bool) throws -> (
    fields: [String: String], seconds: Double
  ) {
    let start = Date()
    var fields = try job(id)
    while !done(fields) && Date().timeIntervalSince(start) < timeout {
      Thread.sleep(forTimeInterval: 0.5)
      fields = try job(id)
    }
    return (fields, Date().timeIntervalSince(start))
  }
}

/// ddp-train's batch script on a real SLURM: a job over two nodes, a signal that checkpoints and requeues, and a
/// lost node.
@Suite(
  .serialized, .enabled(if: SlurmCluster.available, "needs root and namespace hosts for launch/slurm-cluster"),
  .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
final class SlurmTests {
  let scratch: URL
  let cluster: SlurmCluster

  init() throws {
    scratch = try makeScratchDirectory("slurm")
    cluster = try SlurmCluster(hosts: 2)
  }

  deinit { try? FileManager.default.removeItem(at: scratch) }

  static let training = [
    "--dataset", "synthetic", "--synthetic-train", "4096", "--model", "mlp:256,256", "--batch-size", "32",
    "--checkpoint-every", "100", "--seed", "6",
  ]

  func output(of id: String) -> String {
    (try? String(contentsOf: scratch.appendingPathComponent("ddp-train-\(id).out"), encoding: .utf8)) ?? ""
  }

  @Test("a job runs to the end at K = 2, one rank on each of two nodes, with no hostfile")
  func runsToTheEnd() throws {
    let id = try cluster.submit(Self.training + ["--max-steps", "300"], in: scratch)
    let (fields, _) = try cluster.wait(for: id, timeout: 120) {
      $0["JobState"] == "COMPLETED" || $0["JobState"] == "FAILED"
    }
    #expect(fields["JobState"] == "COMPLETED" && fields["ExitCode"] == "0:0", "\(fields)\n\(output(of: id))")
    #expect(output(of: id).contains("MPI across 2 hosts × 1 rank"), "\(output(of: id))")
    #expect(output(of: id).contains("done: 300 steps"))
  }

  @Test(
    "scancel --signal=USR1 --batch: a checkpoint, status 75 and a requeue, and the requeued job ends bitwise where an uninterrupted one does"
  )
  func signalRequeuesAndResumesBitwise() throws {
    let steps = ["--max-steps", "3000"]
    let reference = try cluster.submit(
      Self.training + steps, in: scratch, extra: ["DDP_TRAIN_CHECKPOINTS": "reference"])
    let first = try cluster.wait(for: reference, timeout: 180) {
      $0["JobState"] == "COMPLETED" || $0["JobState"] == "FAILED"
    }
    try #require(first.fields["JobState"] == "COMPLETED", "\(first.fields)\n\(output(of: reference))")

    let metrics = scratch.appendingPathComponent("metrics.jsonl")
    let id = try cluster.submit(
      Self.training + steps + ["--metrics", metrics.path], in: scratch, extra: ["DDP_TRAIN_CHECKPOINTS": "signalled"])
    // Signal it once it is past step 150 (between two checkpoints).
    let start = Date()
    while Date().timeIntervalSince(start) < 60 {
      let text = (try? String(contentsOf: metrics, encoding: .utf8)) ?? ""
      if text.components(separatedBy: "\"event\":\"step\"").count > 150 { break }
      Thread.sleep(forTimeInterval: 0.2)
    }
    let signalled = try cluster.run(["scancel", "--signal=USR1", "--batch", id])
    try #require(signalled.status == 0, "\(signalled.output)")
    // SLURM holds a requeued job for about two minutes (its BeginTime); release it sooner, but not within the second
    // of the requeue: slurmd revokes the job's credentials at the requeue, with a resolution of one second, and a
    // job started in that same second is killed at once ("Killing non-startable batch JobId=2: Job credential
    // revoked" in slurmctld.log; seen 2 times in 4 runs when released at once).
    let requeued = try cluster.wait(for: id, timeout: 60) { $0["Restarts"] == "1" && $0["JobState"] == "PENDING" }
    try #require(requeued.fields["Restarts"] == "1", "\(requeued.fields)\n\(output(of: id))")
    Thread.sleep(forTimeInterval: 2.5)
    _ = try cluster.run(["scontrol", "update", "JobId=\(id)", "StartTime=now"])
    let (fields, _) = try cluster.wait(for: id, timeout: 180) {
      $0["JobState"] == "COMPLETED" || $0["JobState"] == "FAILED"
    }
    let log = output(of: id)
    #expect(fields["JobState"] == "COMPLETED", "\(fields)\n\(log)")
    #expect(log.contains("stopped by SIGUSR1 after step"), "\(log)")
    #expect(log.contains("stopped at a checkpoint (status 75); requeueing job \(id)"), "\(log)")
    #expect(log.contains("resume: from signalled/step-"), "\(log)")
    #expect(
      bitwiseDifference(
        try finalParameters(in: scratch.appendingPathComponent("signalled")),
        try finalParameters(in: scratch.appendingPathComponent("reference"))) == nil)
  }

  @Test("a node lost mid-job ends the job promptly, and the ranks' message names it")
  func lostNodeEndsTheJob() throws {
    let metrics = scratch.appendingPathComponent("metrics.jsonl")
    let id = try cluster.submit(
      Self.training + ["--max-steps", "100000", "--step-timeout", "5", "--metrics", metrics.path], in: scratch)
    let start = Date()
    while Date().timeIntervalSince(start) < 60 {
      let text = (try? String(contentsOf: metrics, encoding: .utf8)) ?? ""
      if text.components(separatedBy: "\"event\":\"step\"").count > 100 { break }
      Thread.sleep(forTimeInterval: 0.2)
    }
    let cut = NamespaceCluster.shell([NamespaceCluster.script, "link", "\(cluster.name)-h2", "down"])
    try #require(cut.status == 0, "\(cut.output)")
    let (fields, seconds) = try cluster.wait(for: id, timeout: 60) { $0["JobState"] != "RUNNING" }
    let log = output(of: id)
    #expect(fields["JobState"] != "RUNNING", "still running after 60 s:\n\(log)")
    // The step timeout (5 s) names the host; SLURM then declares the node down (SlurmdTimeout 10 s) and ends the job.
    #expect(seconds < 30, "\(seconds) s")
    #expect(log.contains("not answering may be rank 1 on \(cluster.name)-h2"), "\(log)")
    print("a lost node ended the job in \(String(format: "%.1f", seconds)) s (state \(fields["JobState"] ?? "?"))")
  }

  @Test("DDP_TRAIN_ELASTIC with sbatch --no-kill: a node lost mid-job, the job goes on on the other and completes")
  func elasticJobLosesANode() throws {
    let metrics = scratch.appendingPathComponent("metrics-elastic.jsonl")
    let id = try cluster.submit(
      Self.training + [
        "--max-steps", "6000", "--step-timeout", "5", "--metrics", metrics.path, "--checkpoint-every", "1000",
        "--log-every", "1000000",
      ], in: scratch, extra: ["DDP_TRAIN_ELASTIC": "1", "DDP_TRAIN_CHECKPOINTS": "elastic"],
      sbatchOptions: ["--no-kill"])
    // Cut the second node's link once the job has a checkpoint to continue from.
    let checkpoints = scratch.appendingPathComponent("elastic")
    let start = Date()
    while Date().timeIntervalSince(start) < 60 && JobWatching.steps(in: checkpoints).isEmpty {
      Thread.sleep(forTimeInterval: 0.2)
    }
    let cut = NamespaceCluster.shell([NamespaceCluster.script, "link", "\(cluster.name)-h2", "down"])
    try #require(cut.status == 0, "\(cut.output)")
    let (fields, seconds) = try cluster.wait(for: id, timeout: 240) {
      !["RUNNING", "PENDING", "COMPLETING"].contains($0["JobState"] ?? "")
    }
    let log = output(of: id)
    #expect(fields["JobState"] == "COMPLETED", "\(fields)\n\(log)")
    #expect(log.contains("lost \(cluster.name)-h2"), "\(log)")
    #expect(log.contains("1 worker × 64 = global batch 64"), "\(log)")
    #expect(log.contains("done: 6000 steps"), "\(log)")
    let memberships = try JobWatching.events("membership", in: metrics)
    #expect(memberships.first?["hosts"] as? [String] == ["\(cluster.name)-h1"], "\(memberships)")
    print("an elastic job without its lost node completed \(String(format: "%.1f", seconds)) s after the cut")
  }

  @Test("down leaves no daemon, host or state behind")
  func downLeavesNothing() throws {
    let state = NamespaceCluster.shell([SlurmCluster.script, "where", "--name", cluster.name]).output
      .trimmingCharacters(in: .whitespacesAndNewlines)
    let down = NamespaceCluster.shell([SlurmCluster.script, "down", "--name", cluster.name])
    #expect(down.status == 0, "\(down.output)")
    #expect(!FileManager.default.fileExists(atPath: state))
    let daemons = NamespaceCluster.shell(["pgrep", "-f", state])
    #expect(daemons.output.isEmpty, "still running: \(daemons.output)")
    let namespaces = NamespaceCluster.shell(["ip", "netns", "list"]).output
    #expect(!namespaces.contains(cluster.name), "\(namespaces)")
  }
}
