import Foundation
import TestSupport
import Testing

/// Training across hosts through real mpirun, on namespace hosts `launch/cluster` makes on this machine: the sum
/// in two levels against one host, `--deterministic` against `--simulate-workers`, checkpoints moved between
/// topologies with each host seeing only its own checkpoint directory, `launch` with a two-host cluster.yaml, and
/// the failures of a host (its ranks killed, its daemon killed, its link cut), each ending the job promptly.
@Suite(
  .serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"),
  .enabled(if: NamespaceCluster.available, "\(NamespaceCluster.unavailableReason)"))
struct MultiHostTests {
  /// A short run with momentum, weight decay and warmup active, a checkpoint every 60 steps. `schedule` constant
  /// lets a run of 60 steps resume with another `--max-steps` at the same lr (cosine's horizon is the run's last step).
  static func arguments(
    batch: Int, steps: Int, checkpoints: String, schedule: String = "cosine", extra: [String] = []
  ) -> [String] {
    [
      "--dataset", "synthetic", "--batch-size", String(batch), "--max-steps", String(steps), "--seed", "7",
      "--lr", schedule == "cosine" ? "0.05" : "0.02", "--base-batch", "64", "--warmup-epochs", "0.5",
      "--schedule", schedule, "--momentum", "0.9", "--weight-decay", "5e-4", "--checkpoint-dir", checkpoints,
      "--checkpoint-every", "60", "--log-every", "1000",
    ] + extra
  }

  /// Every namespace host sees all of the machine's cores, and Open MPI's default binding put each host's first
  /// rank on core 0, so the hosts' ranks shared one core (measured: both at `Cpus_allowed_list: 0`, 37-40k samples/s
  /// instead of 66-82k). `launch/cluster mpirun-args` passes `--bind-to none`; this asks the ranks themselves.
  @Test("the ranks of different namespace hosts are not all bound to one and the same core")
  func ranksOfTheHostsDoNotShareOneCore() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 1)
    defer { cluster.down() }
    let result = try cluster.mpirun(
      ranks: 2, program: "/bin/grep", ["Cpus_allowed_list", "/proc/self/status"], timeout: 60)
    #expect(result.status == 0, "\(result.output)")
    let allowed = result.stdout.split(separator: "\n").compactMap { line in
      line.split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) }
    }
    #expect(allowed.count == 2, "\(result.output)")
    let oneCore = allowed.allSatisfy { $0.allSatisfy(\.isNumber) }
    #expect(!(oneCore && Set(allowed).count == 1), "both ranks may run only on CPU \(allowed.first ?? "?")")
  }

  @Test(
    "one step of 2 hosts × 2 ranks from a common checkpoint equals one step of 1 host × 4 ranks (at steps 60 and 180; 1e-5); --deterministic across hosts is --simulate-workers 4"
  )
  func twoHostsEqualOneHost() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 2)
    defer { cluster.down() }
    let scratch = try makeScratchDirectory("hosts")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let path = { (name: String) in scratch.appendingPathComponent(name).path }
    let url = { (name: String) in scratch.appendingPathComponent(name) }

    let oneHost = try DDPTrainProcess.mpirun(ranks: 4, Self.arguments(batch: 16, steps: 200, checkpoints: path("one")))
    #expect(oneHost.status == 0, "\(oneHost.output)")
    // The sum in two levels against one host's, one step at a time from the checkpoints of the one-host run (whole
    // runs part by rounding in jumps, see `SingleStep`).
    for step in [60, 180] {
      let start = try SingleStep.parameters(at: step, in: url("one"))
      let local = try SingleStep.take(
        from: url("one"), at: step, into: url("one-\(step)"),
        Self.arguments(batch: 16, steps: 200, checkpoints: path("one-\(step)"))
      ) { try DDPTrainProcess.mpirun(ranks: 4, $0) }
      let across = try SingleStep.take(
        from: url("one"), at: step, into: url("two-\(step)"),
        Self.arguments(batch: 16, steps: 200, checkpoints: path("two-\(step)"))
      ) { try cluster.mpirun(ranks: 4, $0) }
      #expect(
        across.result.stdout.contains("gradients: shared memory within 2 hosts × 2 ranks, MPI across hosts"),
        "\(across.result.stdout)")
      SingleStep.expectSameStep(across.parameters, local.parameters, from: start, "step \(step)")
    }
    let reference = try finalParameters(in: url("one"))

    // bf16 on the wire trains to nearly the same place, but not the same bits: the compression is really applied.
    let compressed = try cluster.mpirun(
      ranks: 4, Self.arguments(batch: 16, steps: 200, checkpoints: path("bf16"), extra: ["--compress", "bf16"]))
    #expect(compressed.status == 0, "\(compressed.output)")
    #expect(compressed.stdout.contains("bf16 across hosts with error feedback"), "\(compressed.stdout)")
    let rounded = try finalParameters(in: scratch.appendingPathComponent("bf16"))
    let gap = relativeDistance(rounded, reference)
    #expect(gap > 1e-5 && gap < 0.5, "bf16 vs fp32: \(gap)")
    // Resumed from its step 120 on the same layout: the checkpoint carries every rank's error-feedback
    // residuals, so it ends on the same bits.
    try FileManager.default.createDirectory(atPath: path("bf16-resumed"), withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      atPath: path("bf16") + "/step-00000120", toPath: path("bf16-resumed") + "/step-00000120")
    let resumedCompressed = try cluster.mpirun(
      ranks: 4,
      Self.arguments(
        batch: 16, steps: 200, checkpoints: path("bf16-resumed"), extra: ["--compress", "bf16", "--resume"]))
    #expect(resumedCompressed.status == 0, "\(resumedCompressed.output)")
    #expect(!resumedCompressed.stdout.contains("starts at zero"), "\(resumedCompressed.stdout)")
    let resumedDifference = bitwiseDifference(
      try finalParameters(in: scratch.appendingPathComponent("bf16-resumed")), rounded)
    #expect(resumedDifference == nil, "\(resumedDifference ?? "")")

    let deterministic = try cluster.mpirun(
      ranks: 4, Self.arguments(batch: 16, steps: 200, checkpoints: path("det"), extra: ["--deterministic"]))
    #expect(deterministic.status == 0, "\(deterministic.output)")
    let simulated = try DDPTrainProcess.run(
      Self.arguments(batch: 16, steps: 200, checkpoints: path("sim"), extra: ["--simulate-workers", "4"]))
    #expect(simulated.status == 0, "\(simulated.output)")
    let difference = bitwiseDifference(
      try finalParameters(in: scratch.appendingPathComponent("det")),
      try finalParameters(in: scratch.appendingPathComponent("sim")))
    #expect(difference == nil, "\(difference ?? "")")
  }

  @Test(
    "batch norm across hosts: with sync, one step of 2 hosts × 2 ranks equals one of 1 host × 4 (running statistics included; 1e-5); with local and --deterministic, the run is --simulate-workers 4 bit for bit"
  )
  func batchNormAcrossHosts() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 2)
    defer { cluster.down() }
    let scratch = try makeScratchDirectory("hosts-bn")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let url = { (name: String) in scratch.appendingPathComponent(name) }
    let model = ["--model", "seq:conv8k3p1,bn,relu,pool2,flatten,linear32,bn,relu,linear10", "--random-flip"]
    let sync = { (name: String) in
      Self.arguments(batch: 16, steps: 80, checkpoints: url(name).path, extra: model + ["--batch-norm", "sync"])
    }
    let oneHost = try DDPTrainProcess.mpirun(ranks: 4, sync("one"))
    #expect(oneHost.status == 0, "\(oneHost.output)")
    let start = try SingleStep.parameters(at: 60, in: url("one"))
    let local = try SingleStep.take(from: url("one"), at: 60, into: url("one-60"), sync("one-60")) {
      try DDPTrainProcess.mpirun(ranks: 4, $0)
    }
    let across = try SingleStep.take(from: url("one"), at: 60, into: url("two-60"), sync("two-60")) {
      try cluster.mpirun(ranks: 4, $0)
    }
    #expect(across.result.stdout.contains("MPI across hosts"), "\(across.result.stdout)")
    SingleStep.expectSameStep(across.parameters, local.parameters, from: start, "sync batch norm, step 60")

    let deterministic = try cluster.mpirun(
      ranks: 4,
      Self.arguments(
        batch: 16, steps: 80, checkpoints: url("det").path, extra: model + ["--batch-norm", "local", "--deterministic"])
    )
    #expect(deterministic.status == 0, "\(deterministic.output)")
    let simulated = try DDPTrainProcess.run(
      Self.arguments(
        batch: 16, steps: 80, checkpoints: url("sim").path,
        extra: model + ["--batch-norm", "local", "--simulate-workers", "4"]))
    #expect(simulated.status == 0, "\(simulated.output)")
    let difference = bitwiseDifference(try finalParameters(in: url("det")), try finalParameters(in: url("sim")))
    #expect(difference == nil, "\(difference ?? "")")
  }

  @Test(
    "a checkpoint of 2 hosts × 2 ranks resumes on 1 host × 4 and the reverse, only rank 0's host having it; one step from it on either layout agrees to 1e-5"
  )
  func checkpointsMoveBetweenTopologies() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 2)
    defer { cluster.down() }
    let scratch = try makeScratchDirectory("hosts-ck")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let path = { (name: String) in scratch.appendingPathComponent(name).path }
    let url = { (name: String) in scratch.appendingPathComponent(name) }
    // Each host sees its own, empty checkpoint directory (a tmpfs mounted inside it), as separate machines would.
    for directory in ["private-a", "private-b"] {
      try FileManager.default.createDirectory(atPath: path(directory), withIntermediateDirectories: true)
      for host in cluster.hosts {
        #expect(cluster.exec(host, ["mount", "-t", "tmpfs", "tmpfs", path(directory)]).status == 0)
      }
    }
    // Each resumed run takes one step (whole runs part by rounding in jumps, `SingleStep`), compared with one step
    // from the same checkpoint on the layout that wrote it.

    // 2 × 2 for 60 steps: the checkpoint exists on rank 0's host only.
    let first = try cluster.mpirun(
      ranks: 4, Self.arguments(batch: 16, steps: 60, checkpoints: path("private-a"), schedule: "constant"))
    #expect(first.status == 0, "\(first.output)")
    #expect(cluster.exec(cluster.hosts[0], ["ls", path("private-a")]).output.contains("step-00000060"))
    #expect(!cluster.exec(cluster.hosts[1], ["ls", path("private-a")]).output.contains("step-"))
    #expect(!FileManager.default.fileExists(atPath: path("private-a") + "/step-00000060"))
    // Carried off rank 0's host, resumed on one host with 4 ranks (step 60 to 61) and, for reference, on 2 × 2.
    try FileManager.default.createDirectory(atPath: path("carried-a"), withIntermediateDirectories: true)
    cluster.exec(cluster.hosts[0], ["cp", "-a", path("private-a") + "/step-00000060", path("carried-a")])
    let movedA = try SingleStep.take(
      from: url("carried-a"), at: 60, into: url("moved-a"),
      Self.arguments(batch: 16, steps: 120, checkpoints: path("moved-a"), schedule: "constant")
    ) { try DDPTrainProcess.mpirun(ranks: 4, $0) }
    let stayedA = try SingleStep.take(
      from: url("carried-a"), at: 60, into: url("stayed-a"),
      Self.arguments(batch: 16, steps: 120, checkpoints: path("stayed-a"), schedule: "constant")
    ) { try cluster.mpirun(ranks: 4, $0) }
    SingleStep.expectSameStep(
      movedA.parameters, stayedA.parameters, from: try SingleStep.parameters(at: 60, in: url("carried-a")),
      "2 × 2 carried to 1 × 4")

    // The reverse: the checkpoint 1 host × 4 wrote (of step 61), carried to rank 0's host only, resumed there on
    // 2 hosts × 2 (step 61 to 62) and, for reference, on 1 × 4.
    cluster.exec(cluster.hosts[0], ["cp", "-a", path("moved-a") + "/step-00000061", path("private-b")])
    let resumedOnTwoHosts = try cluster.mpirun(
      ranks: 4,
      Self.arguments(batch: 16, steps: 120, checkpoints: path("private-b"), schedule: "constant")
        + SingleStep.resumeForOneStep(at: 61))
    #expect(resumedOnTwoHosts.status == SingleStep.stoppedStatus, "\(resumedOnTwoHosts.output)")
    #expect(resumedOnTwoHosts.stdout.contains("at step 61"), "\(resumedOnTwoHosts.stdout)")
    #expect(!cluster.exec(cluster.hosts[1], ["ls", path("private-b")]).output.contains("step-"))
    try FileManager.default.createDirectory(atPath: path("moved-b"), withIntermediateDirectories: true)
    cluster.exec(cluster.hosts[0], ["cp", "-a", path("private-b") + "/step-00000062", path("moved-b")])
    let stayedB = try SingleStep.take(
      from: url("moved-a"), at: 61, into: url("stayed-b"),
      Self.arguments(batch: 16, steps: 120, checkpoints: path("stayed-b"), schedule: "constant")
    ) { try DDPTrainProcess.mpirun(ranks: 4, $0) }
    SingleStep.expectSameStep(
      try SingleStep.parameters(at: 62, in: url("moved-b")), stayedB.parameters,
      from: movedA.parameters, "1 × 4 carried to 2 × 2")
  }

  /// A long two-host job through `launch`, with `fault` applied once both of host 2's ranks run; returns the
  /// result and the seconds from the fault to the job's end.
  func launchAndBreak(
    _ cluster: NamespaceCluster, stepTimeout: Int, fault: @escaping @Sendable (NamespaceCluster) -> Void
  ) throws -> (DDPTrainProcess.Result, Double) {
    let scratch = try makeScratchDirectory("hosts-fault")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let config = scratch.appendingPathComponent("cluster.yaml")
    try
      (cluster.yaml
      + "train:\n  dataset: synthetic\n  model: mlp:32\n  max-steps: 10000000\n  log-every: 1000000\n"
      + "  step-timeout: \(stepTimeout)\n").write(to: config, atomically: true, encoding: .utf8)
    let faultTime = LockedBox<Date>()
    nonisolated(unsafe) let target = cluster
    let result = try DDPTrainProcess.run(["launch", "--config", config.path], timeout: 90) { _ in
      _ = JobWatching.wait(timeout: 30) {
        target.processes(on: target.hosts[1]).filter { $0.name == "ddp-train" }.count == target.slots
      }
      usleep(1_500_000)
      faultTime.set(Date())
      fault(target)
    }
    let end = Date()
    let seconds = end.timeIntervalSince(faultTime.value ?? end)
    print(
      String(format: "MultiHostTests: launch: the job ended %.1f s after the fault, status %d", seconds, result.status))
    return (result, seconds)
  }

  @Test("every rank of a host killed: the job ends within 5 s, non-zero, naming the host and its ranks")
  func ranksOfAHostKilled() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 2)
    defer { cluster.down() }
    let (result, seconds) = try launchAndBreak(cluster, stepTimeout: 10) { cluster in
      cluster.killAll(named: "ddp-train", on: cluster.hosts[1])
    }
    #expect(!result.timedOut && result.status != 0, "\(result.output)")
    #expect(seconds < 5, "ended \(seconds) s after the kill")
    #expect(result.stderr.contains("the job failed on host \(cluster.hosts[1]) (ranks 2-3)"), "\(result.stderr)")
  }

  @Test("a host's Open MPI daemon killed: the job ends within 5 s, naming the host; its ranks do not live on")
  func daemonOfAHostKilled() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 2)
    defer { cluster.down() }
    let (result, seconds) = try launchAndBreak(cluster, stepTimeout: 10) { cluster in
      cluster.killAll(named: "orted", on: cluster.hosts[1])
    }
    #expect(!result.timedOut && result.status != 0, "\(result.output)")
    #expect(seconds < 5, "ended \(seconds) s after the kill")
    #expect(result.stderr.contains("the job failed on host \(cluster.hosts[1]) (ranks 2-3)"), "\(result.stderr)")
    // The ranks whose daemon died follow it at once. Without PR_SET_PDEATHSIG they lived on for 1-1.5 s after the
    // job had ended (until Open MPI's PMIx client noticed), so a longer wait could not tell the two apart.
    let orphansGone = JobWatching.wait(timeout: 0.5) {
      cluster.processes(on: cluster.hosts[1]).allSatisfy { $0.name != "ddp-train" }
    }
    #expect(orphansGone, "\(cluster.processes(on: cluster.hosts[1]))")
  }

  @Test("a host's link cut: the watchdog ends the job within --step-timeout + 5 s, naming who stopped answering")
  func linkOfAHostCut() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 2)
    defer { cluster.down() }
    let (result, seconds) = try launchAndBreak(cluster, stepTimeout: 10) { cluster in
      cluster.link(cluster.hosts[1], up: false)
    }
    #expect(!result.timedOut, "\(result.output)")
    #expect(result.status == 4, "\(result.output)")
    #expect(seconds < 15, "ended \(seconds) s after the link went down")
    #expect(result.stderr.contains("not answering may be ranks 2-3 on \(cluster.hosts[1])"), "\(result.stderr)")
    #expect(result.stderr.contains("ranks 2-3 on \(cluster.hosts[1]) stopped answering"), "\(result.stderr)")
  }

  @Test("plain mpirun on the first host: a link cut ends the job within --step-timeout + 10 s, naming the host")
  func linkOfAHostCutUnderPlainMPIRun() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 2)
    defer { cluster.down() }
    let cutAt = LockedBox<Date>()
    nonisolated(unsafe) let target = cluster
    let arguments = [
      "--dataset", "synthetic", "--model", "mlp:32", "--max-steps", "10000000", "--log-every", "1000000",
      "--step-timeout", "10",
    ]
    // mpirun's own --timeout (120 s) is the backstop: without the guard of Note [A launcher left waiting], the
    // job ends only there.
    let result = try cluster.mpirun(ranks: 4, arguments, timeout: 120, onHost: cluster.hosts[0]) { _ in
      _ = JobWatching.wait(timeout: 30) {
        target.processes(on: target.hosts[1]).filter { $0.name == "ddp-train" }.count == target.slots
      }
      usleep(1_500_000)
      cutAt.set(Date())
      target.link(target.hosts[1], up: false)
    }
    let seconds = Date().timeIntervalSince(cutAt.value ?? Date())
    print(String(format: "MultiHostTests: plain mpirun: the job ended %.1f s after the link was cut", seconds))
    #expect(!result.timedOut && result.status != 0, "\(result.output)")
    #expect(seconds < 20, "ended \(seconds) s after the link went down: \(result.output)")
    #expect(result.stderr.contains("not answering may be ranks 2-3 on \(cluster.hosts[1])"), "\(result.stderr)")
    #expect(result.stderr.contains("Ended mpirun (SIGKILL)"), "\(result.stderr)")
    // Nothing stays behind on mpirun's host: its ranks and the guard are gone.
    let cleared = JobWatching.wait(timeout: 5) {
      cluster.processes(on: cluster.hosts[0]).allSatisfy { $0.name != "ddp-train" && $0.name != "mpirun" }
    }
    #expect(cleared, "\(cluster.processes(on: cluster.hosts[0]))")
  }

  @Test("plain mpirun on the first host: the guard leaves a job that ends, or fails reachably, to mpirun")
  func guardStaysOutOfReachableJobs() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 2)
    defer { cluster.down() }
    let finished = try cluster.mpirun(
      ranks: 4, ["--dataset", "synthetic", "--model", "mlp:32", "--max-steps", "200", "--log-every", "1000"],
      timeout: 60, onHost: cluster.hosts[0])
    #expect(finished.status == 0, "\(finished.output)")
    #expect(!finished.stderr.contains("Ended mpirun"), "\(finished.stderr)")
    nonisolated(unsafe) let target = cluster
    let killed = try cluster.mpirun(
      ranks: 4,
      [
        "--dataset", "synthetic", "--model", "mlp:32", "--max-steps", "10000000", "--log-every", "1000000",
        "--step-timeout", "10",
      ], timeout: 60, onHost: cluster.hosts[0]
    ) { _ in
      _ = JobWatching.wait(timeout: 30) {
        target.processes(on: target.hosts[1]).filter { $0.name == "ddp-train" }.count == target.slots
      }
      usleep(1_500_000)
      target.killAll(named: "ddp-train", on: target.hosts[1])
    }
    // mpirun ends such a job by itself, with its own status, and the guard, finding it gone, says nothing.
    #expect(!killed.timedOut && killed.status != 0 && killed.signal == nil, "\(killed.output)")
    #expect(!killed.stderr.contains("Ended mpirun"), "\(killed.stderr)")
    usleep(UInt32((3.0 + 1) * 1_000_000))
    #expect(
      cluster.processes(on: cluster.hosts[0]).allSatisfy { $0.name != "ddp-train" },
      "\(cluster.processes(on: cluster.hosts[0]))")
  }

  @Test("launch with a two-host cluster.yaml trains across them")
  func launchAcrossHosts() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 2)
    defer { cluster.down() }
    let scratch = try makeScratchDirectory("hosts-launch")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let config = scratch.appendingPathComponent("cluster.yaml")
    try (cluster.yaml + "train:\n  dataset: synthetic\n  model: mlp:32\n  max-steps: 300\n  log-every: 1000\n").write(
      to: config, atomically: true, encoding: .utf8)
    let result = try DDPTrainProcess.run(["launch", "--config", config.path], timeout: 90)
    #expect(result.status == 0, "\(result.output)")
    #expect(result.stdout.contains("4 workers × 64 = global batch 256"), "\(result.stdout)")
    #expect(
      result.stdout.contains("gradients: shared memory within 2 hosts × 2 ranks, MPI across hosts"), "\(result.stdout)")
    #expect(result.stdout.contains("done: 300 steps"), "\(result.stdout)")
  }
}
