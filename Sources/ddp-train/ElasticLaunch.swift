import Checkpoints
import Foundation
import ScalingStudy
import Training

/// What `launch --elastic` needs of the job it runs: the cluster as configured, the settings every rank resolves,
/// the mpirun command without hosts, and `train` with its options.
struct ElasticJob {
  var cluster: ClusterSpec
  var training: TrainingConfiguration
  var command: MPIRunCommand
  var program: [String]
  var maxRestarts: Int
}

/// Exit status of `launch --elastic` when fewer than `--min-hosts` hosts are left (sysexits' EX_UNAVAILABLE).
let tooFewHostsStatus: Int32 = 69

/// How many times a host may be lost before launch leaves it out for the rest of the job.
let lossesBeforeLeftOut = 3

extension LaunchCommand {
  /// The input errors of `--elastic` (exit 2, before anything runs).
  func checkElastic(cluster: ClusterSpec, training: TrainingConfiguration) throws {
    if training.checkpointDirectory == nil {
      throw ConfigurationError(
        option: "--elastic", expected: "a --checkpoint-dir (train: checkpoint-dir) to continue from",
        found: "no checkpoint directory",
        hint:
          "Add checkpoint-dir and checkpoint-every to the train: section; the job continues from its newest checkpoint."
      )
    }
    guard minHosts >= 1 && minHosts <= cluster.hosts.count else {
      throw ConfigurationError(
        option: "--min-hosts", expected: "a number of hosts from 1 to the cluster's \(cluster.hosts.count)",
        found: "\(minHosts)")
    }
    guard probeEvery > 0 && probeEvery.isFinite else {
      throw ConfigurationError(option: "--probe-every", expected: "a number of seconds > 0", found: "\(probeEvery)")
    }
    if cluster.isLocalOnly {
      throw ConfigurationError(
        option: "--elastic", expected: "a cluster of several hosts", found: "only this host",
        hint: "A job on one host has no other host to continue on; use --max-restarts.")
    }
  }

  /// Runs the job on every host that answers, relaunching it on fewer hosts when some fail and on more when they
  /// come back (see the discussion of `launch`). Returns the job's final status.
  ///
  /// Invariants: `active` keeps the cluster's host order (rank 0 on the first active host); a lost host is in
  /// `watch` until it answers or has been lost `lossesBeforeLeftOut` times; every relaunch resumes from the newest
  /// checkpoint with the layout `ElasticLayout.keeping` gives for the active slots.
  func runElastic(_ job: ElasticJob) throws -> Int32 {
    let cluster = job.cluster
    var active = cluster.hosts
    var losses: [String: Int] = [:]
    let watch = LostHosts(probe: { host in HostProbe.answers(host, job: job) }, every: probeEvery)
    watch.start()
    defer { watch.stop() }
    var restarts = 0
    var resumedFrom: Int?
    var again: [String] = []
    while true {
      let (status, named) = try runOnce(job, hosts: active, extra: again, watch: watch)
      if Self.finalStatuses.contains(status) && status != ExitStatus.stopped { return status }
      if status == ExitStatus.stopped {
        // Stopped by launch to take hosts back, or by the user (who then gets the status).
        let back = watch.takeReturned()
        guard !back.isEmpty, !JobSignals.stopRequested else { return status }
        active = cluster.hosts.filter { host in active.contains(host) || back.contains(host.name) }
        let newest = try newestCheckpoint(job.training)
        say(
          "host\(back.count == 1 ? "" : "s") \(back.joined(separator: ", ")) answer\(back.count == 1 ? "s" : "") again; "
            + "continuing on \(active.count) hosts from the checkpoint of step \(newest ?? 0)")
        try recordMembership(job, active: active, reason: "returned", changed: back, step: newest ?? 0)
        again = ["--resume", "--no-start-fresh"]
        continue
      }
      if JobSignals.stopRequested { return status }

      // A failure: who failed? The hosts Open MPI named, and every active host that does not answer now.
      let silent = HostProbe.silent(among: active.map(\.name), job: job)
      let down = active.map(\.name).filter { named.contains($0) || silent.contains($0) }
      for host in down {
        losses[host, default: 0] += 1
        if losses[host]! >= lossesBeforeLeftOut {
          say("host \(host) was lost \(losses[host]!) times; leaving it out for the rest of the job")
        } else {
          watch.add(host)
        }
      }
      active.removeAll { down.contains($0.name) }
      if active.count < minHosts {
        say(
          "the job failed with status \(status) and \(active.count) host\(active.count == 1 ? "" : "s") answer"
            + (active.count == 1 ? "s" : "") + ", fewer than --min-hosts \(minHosts); ending the job (status "
            + "\(tooFewHostsStatus))")
        return tooFewHostsStatus
      }
      guard restarts < job.maxRestarts else {
        say("the job failed with status \(status); giving up after \(restarts) restart(s) (--max-restarts)")
        return status
      }
      let newest = try newestCheckpoint(job.training)
      if down.isEmpty, let resumedFrom, newest == resumedFrom {
        say(
          "the job failed with status \(status) again from step \(resumedFrom) on the same hosts without writing a "
            + "newer checkpoint; giving up (a failure that repeats at the same place will not go away)")
        return status
      }
      restarts += 1
      resumedFrom = newest ?? 0
      say(
        "the job failed with status \(status)"
          + (down.isEmpty ? "; every host answers" : " and lost \(down.joined(separator: ", "))")
          + "; restart \(restarts) of \(job.maxRestarts) on \(active.count) host\(active.count == 1 ? "" : "s") "
          + (newest.map { "from the checkpoint of step \($0)" } ?? "from the start (no checkpoint yet)"))
      try appendRestartEvent(
        to: job.training.metricsPath, restart: restarts, of: job.maxRestarts, status: status, step: newest ?? 0)
      if !down.isEmpty {
        try recordMembership(job, active: active, reason: "lost", changed: down, step: newest ?? 0)
      }
      again = (newest == nil ? ["--no-resume"] : ["--resume"]) + ["--no-start-fresh"]
      usleep(500_000)
    }
  }

  /// One mpirun on `hosts` with their layout: its status, and the hosts Open MPI named as failed.
  private func runOnce(
    _ job: ElasticJob, hosts: [ClusterSpec.Host], extra: [String], watch: LostHosts
  ) throws -> (status: Int32, named: Set<String>) {
    let layout = job.layout(on: hosts)
    let spec = ClusterSpec(hosts: hosts, mpirunArguments: job.cluster.mpirunArguments)
    var command = job.command
    command.ranks = layout.worldSize
    let hostfile = NSTemporaryDirectory() + "ddp-train-hostfile-\(getpid())"
    try Self.writeHostfile(hostfile, hosts: hosts)
    command.hostfile = hostfile
    let words = command.words(
      program: job.program + extra + [
        "--batch-size", String(layout.batchSize), "--accumulate", String(layout.accumulate),
      ])
    if hosts != job.cluster.hosts {
      print("ddp-train launch: " + words.map(shellQuoted).joined(separator: " "))
      fflush(nil)
    }
    let relay = FailureRelay(cluster: spec)
    let status = try runJob(words, relay: relay, stopWhen: { watch.hasReturned })
    return (status, Set(relay.namedHosts))
  }

  /// Says what the next attempt runs on, and appends a `membership` event to the metrics file.
  private func recordMembership(
    _ job: ElasticJob, active: [ClusterSpec.Host], reason: String, changed: [String], step: Int
  ) throws {
    let layout = job.layout(on: active)
    let original = job.cluster.worldSize * job.training.batchSize * job.training.accumulate
    if layout.keepsGlobalBatch {
      say("membership: \(active.map(\.name).joined(separator: ", ")): \(layout.description), as before")
      if layout.worldSize != job.cluster.worldSize {
        if job.training.batchNorm == .local && job.hasBatchNorm {
          say(
            "note: with --batch-norm local each rank now normalises over \(layout.batchSize) samples instead of "
              + "\(job.training.batchSize): the steps are not the original job's (--batch-norm sync keeps them)")
        }
        if job.training.compress != .none {
          say("note: with --compress the error-feedback residuals start again on the new layout")
        }
      }
    } else {
      say(
        "membership: \(active.map(\.name).joined(separator: ", ")): no split of global batch \(original) over "
          + "\(layout.worldSize) workers exists; continuing with \(layout.description), the lr policy "
          + "(--lr-scaling) applied to it")
    }
    if active.first?.name != job.cluster.hosts.first?.name {
      say(
        "note: rank 0 now runs on \(active.first!.name) and resumes from the checkpoint directory as that host sees it "
          + "(it must be the same, shared directory)")
    }
    let names = { (list: [String]) in "[" + list.map { "\"\($0)\"" }.joined(separator: ",") + "]" }
    appendEvent(
      to: job.training.metricsPath,
      "{\"event\":\"membership\",\"reason\":\"\(reason)\",\"changed\":\(names(changed)),"
        + "\"hosts\":\(names(active.map(\.name))),\"world_size\":\(layout.worldSize),"
        + "\"batch_size\":\(layout.batchSize),\"accumulate\":\(layout.accumulate),"
        + "\"global_batch\":\(layout.globalBatch),\"kept_global_batch\":\(layout.keepsGlobalBatch),"
        + "\"resume_step\":\(step)}")
  }
}

extension ElasticJob {
  /// The per-rank batch and accumulation on `hosts` (see `ElasticLayout.keeping`).
  func layout(on hosts: [ClusterSpec.Host]) -> ElasticLayout {
    ElasticLayout.keeping(
      worldSize: hosts.reduce(0) { $0 + $1.slots }, originalWorldSize: cluster.worldSize,
      batchSize: training.batchSize, accumulate: training.accumulate)
  }

  /// Whether the model has batch normalisation: the `resnet` preset, or a `bn` token in the spec.
  var hasBatchNorm: Bool {
    training.model == "resnet"
      || training.model.split(whereSeparator: { ",:() ".contains($0) }).contains("bn")
  }
}

/// Whether a host answers: a one-rank mpirun of `true` there, with the cluster's own mpirun arguments. It needs what
/// the job needs: the agent that starts Open MPI's daemon there, and the daemon's connection back over the job's
/// network. A host whose link is down fails within seconds (no route back); one that does not answer within
/// `timeout` counts as silent.
enum HostProbe {
  static let timeout: Double = 10

  static func answers(_ host: String, job: ElasticJob) -> Bool {
    var words = [job.command.mpirun, "-np", "1", "--host", "\(host):1"]
    if job.command.isRoot { words.append("--allow-run-as-root") }
    words += job.cluster.mpirunArguments + ["true"]
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = words
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(50_000) }
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
      return false
    }
    return process.terminationReason == .exit && process.terminationStatus == 0
  }

  /// The hosts among `hosts` that do not answer, probed at once.
  static func silent(among hosts: [String], job: ElasticJob) -> Set<String> {
    let answers = LockedSet()
    DispatchQueue.concurrentPerform(iterations: hosts.count) { index in
      if Self.answers(hosts[index], job: job) { answers.insert(hosts[index]) }
    }
    return Set(hosts).subtracting(answers.values)
  }
}

final class LockedSet: @unchecked Sendable {
  private let lock = NSLock()
  private var set: Set<String> = []
  func insert(_ value: String) { lock.withLock { _ = set.insert(value) } }
  var values: Set<String> { lock.withLock { set } }
}

/// The lost hosts launch asks again, every `every` seconds on a thread of its own, whether they are back.
final class LostHosts: @unchecked Sendable {
  private let lock = NSLock()
  private var waiting: [String: Date] = [:]
  private var returned: [String] = []
  private var running = false
  private let probe: @Sendable (String) -> Bool
  private let every: Double

  init(probe: @escaping @Sendable (String) -> Bool, every: Double) {
    self.probe = probe
    self.every = every
  }

  func add(_ host: String) { lock.withLock { waiting[host] = Date() } }

  var hasReturned: Bool { lock.withLock { !returned.isEmpty } }

  /// The hosts that answered since the last call, in the order they did.
  func takeReturned() -> [String] {
    lock.withLock {
      defer { returned = [] }
      return returned
    }
  }

  func start() {
    lock.withLock { running = true }
    Thread.detachNewThread { [self] in
      while lock.withLock({ running }) {
        usleep(200_000)
        let due = lock.withLock { waiting.filter { Date().timeIntervalSince($0.value) >= every }.map(\.key) }
        for host in due.sorted() {
          let back = probe(host)
          lock.withLock {
            if back {
              waiting[host] = nil
              returned.append(host)
            } else {
              waiting[host] = Date()
            }
          }
        }
      }
    }
  }

  func stop() { lock.withLock { running = false } }
}
