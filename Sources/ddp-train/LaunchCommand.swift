import ArgumentParser
import Checkpoints
import Foundation
import ScalingStudy
import Training

/// `ddp-train launch`: turns `cluster.yaml` into the mpirun command, prints it, runs it, and exits with its status;
/// with `--max-restarts N` it relaunches a failed job from its newest checkpoint.
struct LaunchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "launch",
    abstract: "Run the job a cluster.yaml describes through mpirun.",
    discussion: """
      K = the sum of the hosts' slots. One host named localhost runs locally (with --oversubscribe when K exceeds
      the cores); several hosts get a hostfile. Arguments after `--` are passed to every rank's `train`.
      SIGTERM or SIGINT (Ctrl-C) to launch asks the job to stop after its current step, checkpoint and exit with
      status 75 (resumable); a second one ends it at once.
      With --max-restarts N, a job that fails (any status but 0, 2, 3 and 75) is relaunched with --resume from its
      newest checkpoint, after a short pause; launch gives up after N restarts, or at once when the job fails
      again without having written a newer checkpoint.
      With --elastic, a job that loses hosts (its ranks killed, its link down, its daemon gone) is relaunched on the
      hosts that still answer, keeping the global batch K·B·M through the per-rank batch or accumulation where it
      can; lost hosts are asked again every --probe-every seconds and, when they answer, the job stops with a
      checkpoint and is relaunched on them too. A host lost 3 times is left out; fewer than --min-hosts hosts end
      the job (status 69).
      """)

  @Option(help: "The cluster and training configuration.")
  var config: String = "cluster.yaml"
  @Flag(help: "Print the mpirun command without running it.")
  var dryRun = false
  @Option(help: "The mpirun to use.")
  var mpirun: String = "mpirun"
  @Option(
    parsing: .unconditional,
    help:
      "Relaunch a failed job up to N times from its newest checkpoint (needs --checkpoint-dir) (default 0; 10 with --elastic)."
  )
  var maxRestarts: Int?
  @Flag(help: "Continue on the hosts that still answer when hosts fail, and take them back when they answer again.")
  var elastic = false
  @Option(help: "With --elastic: the fewest hosts the job may run on (default 1).")
  var minHosts = 1
  @Option(help: "With --elastic: seconds between asking a lost host whether it is back (default 60).")
  var probeEvery: Double = 60
  @Argument(parsing: .postTerminator, help: "Extra train options for every rank (after --).")
  var trainArguments: [String] = []

  /// The job's statuses that a relaunch would only repeat, or that mean it ended as asked.
  static let finalStatuses: Set<Int32> = [
    ExitStatus.success, ExitStatus.inputError, ExitStatus.diverged, ExitStatus.stopped,
  ]

  func run() throws {
    // A mask inherited from whoever started launch (a thread pool, a runtime) could block the signals launch must
    // see and, inherited again, the SIGUSR1 mpirun must forward: launch and its mpirun start with none blocked.
    var none = sigset_t()
    sigemptyset(&none)
    pthread_sigmask(SIG_SETMASK, &none, nil)
    let file = try ConfigFile.load(path: config)
    // Report a bad train: section or option now, not on every rank; the settings say where checkpoints go.
    let training = try resolveTraining(file)
    guard let cluster = file.cluster else {
      throw ConfigFileError(
        path: config, key: "cluster", problem: "missing; launch needs `cluster: {hosts: [{name, slots}]}`")
    }
    let maxRestarts = self.maxRestarts ?? (elastic ? 10 : 0)
    guard maxRestarts >= 0 else {
      throw ConfigurationError(option: "--max-restarts", expected: "a number of restarts >= 0", found: "\(maxRestarts)")
    }
    if elastic {
      try checkElastic(cluster: cluster, training: training)
    }
    if maxRestarts > 0 && training.checkpointDirectory == nil {
      throw ConfigurationError(
        option: "--max-restarts", expected: "a --checkpoint-dir (train: checkpoint-dir) to resume from",
        found: "no checkpoint directory", hint: "Add checkpoint-dir and checkpoint-every to the train: section.")
    }
    var mpirunCommand = MPIRunCommand(
      mpirun: mpirun, ranks: cluster.worldSize, cores: ProcessInfo.processInfo.activeProcessorCount,
      isRoot: getuid() == 0)
    mpirunCommand.local = cluster.isLocalOnly
    // What a stopped job's rank 0 prints as the command that continues it: this launch, resuming.
    let kept = Array(CommandLine.arguments.dropFirst().prefix { $0 != "--" })
    let resume =
      ["ddp-train"] + kept + ["--"] + FaultInjection.removed(from: trainArguments).filter { $0 != "--start-fresh" }
      + ["--resume"]
    setenv("DDP_TRAIN_RESUME_COMMAND", resume.map(shellQuoted).joined(separator: " "), 1)
    mpirunCommand.mpirunArguments =
      ["-x", "DDP_TRAIN_RESUME_COMMAND"]
      + (cluster.isLocalOnly ? [] : Self.daemonKeepalive(cluster: cluster, training: training))
      + cluster.mpirunArguments
    var hostfile: String?
    if !cluster.isLocalOnly {
      let path = NSTemporaryDirectory() + "ddp-train-hostfile-\(getpid())"
      if !dryRun { try Self.writeHostfile(path, hosts: cluster.hosts) }
      mpirunCommand.hostfile = path
      hostfile = path
    }
    defer { if let hostfile { unlink(hostfile) } }
    // This very binary, also when it was found through PATH (argv[0] is then a bare name).
    let executable =
      (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
      ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    let configPath = URL(fileURLWithPath: config).standardizedFileURL.path
    let program = [executable, "train", "--config", configPath] + trainArguments
    let command = mpirunCommand.words(program: program)
    print("ddp-train launch: " + command.map(shellQuoted).joined(separator: " "))
    fflush(nil)
    guard !dryRun else { return }

    if elastic {
      let status = try runElastic(
        ElasticJob(
          cluster: cluster, training: training, command: mpirunCommand, program: program, maxRestarts: maxRestarts))
      if status != 0 { throw ExitCode(status) }
      return
    }
    var restarts = 0
    var resumedFrom: Int?
    let relay = cluster.isLocalOnly ? nil : FailureRelay(cluster: cluster)
    var status = try runJob(command, relay: relay)
    while !Self.finalStatuses.contains(status) && !JobSignals.stopRequested {
      guard restarts < maxRestarts else {
        if maxRestarts > 0 { say("the job failed with status \(status); giving up after \(restarts) restart(s)") }
        break
      }
      let newest = try newestCheckpoint(training)
      if let resumedFrom, newest == resumedFrom {
        say(
          "the job failed with status \(status) again from step \(resumedFrom) without writing a newer checkpoint; "
            + "giving up (a failure that repeats at the same place will not go away)")
        break
      }
      restarts += 1
      resumedFrom = newest ?? 0
      let pause = min(Double(restarts), 5)
      say(
        "the job failed with status \(status); restart \(restarts) of \(maxRestarts) "
          + (newest.map { "from the checkpoint of step \($0)" } ?? "from the start (no checkpoint yet)")
          + String(format: " in %.0f s", pause))
      try appendRestartEvent(
        to: training.metricsPath, restart: restarts, of: maxRestarts, status: status, step: newest ?? 0)
      usleep(UInt32(pause * 1_000_000))
      // Later options win: resume when there is something to resume, and never start fresh again.
      let again = program + (newest == nil ? ["--no-resume"] : ["--resume"]) + ["--no-start-fresh"]
      status = try runJob(mpirunCommand.words(program: again), relay: relay)
    }
    if status != 0 { throw ExitCode(status) }
  }

  /// The train settings every rank will resolve: the config file's `train:` section, then the options after `--`
  /// (without the test-only `--inject-fault`, which the table does not know).
  func resolveTraining(_ file: ConfigFile) throws -> TrainingConfiguration {
    var training = TrainingConfiguration()
    try file.applyTrainSection(to: &training)
    try TrainOption.apply(TrainOption.parse(FaultInjection.removed(from: trainArguments)), to: &training)
    try training.validate()
    return training
  }

  /// Runs one mpirun to its end and returns its exit status. The first SIGTERM or SIGINT becomes SIGUSR1 for
  /// mpirun, which forwards it to every rank (a stop after the current step, status 75); mpirun itself would
  /// answer SIGTERM or SIGINT by killing the ranks. A second one is passed on as SIGTERM: the job ends at once.
  /// With a `relay` (jobs across hosts) mpirun's stderr passes through launch, which, when the job fails, adds one
  /// line naming the host that failed and the ranks it ran.
  /// `stopWhen`, polled every 0.1 s while the job runs, asks it to stop (SIGUSR1: a checkpoint, status 75) once it
  /// returns true (launch --elastic, taking a host back).
  func runJob(_ command: [String], relay: FailureRelay? = nil, stopWhen: (() -> Bool)? = nil) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    let pipe = relay.map { _ in Pipe() }
    if let pipe { process.standardError = pipe }
    do { try process.run() } catch {
      throw ConfigFileError(
        path: config, key: nil, problem: "could not start \(mpirun): \(error). Is openmpi-bin installed?")
    }
    let reader = pipe.map { pipe in relay!.start(reading: pipe.fileHandleForReading) }
    JobSignals.forward(to: process)
    var killedAfterWatchdog = false
    if relay != nil || stopWhen != nil {
      // Note [A host mpirun cannot reach]: once a rank's watchdog has said it is ending the job, a reachable job
      // is gone within a second; mpirun still there after `abortWait` is waiting for a daemon it cannot reach,
      // and would wait for as long as TCP retransmits (a quarter of an hour). End it: the daemons it can reach then
      // end their ranks, and the ranks it cannot reach end by their own watchdog.
      var stopAsked = false
      while process.isRunning {
        if !stopAsked, let stopWhen, stopWhen() {
          kill(process.processIdentifier, SIGUSR1)
          stopAsked = true
        }
        if let fired = relay?.watchdogFiredAt, Date().timeIntervalSince(fired) > Self.abortWait {
          kill(process.processIdentifier, SIGKILL)
          killedAfterWatchdog = true
          break
        }
        usleep(100_000)
      }
    }
    process.waitUntilExit()
    JobSignals.forward(to: nil)
    if !killedAfterWatchdog { reader?.wait() }
    var status =
      process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    if killedAfterWatchdog {
      status = ExitStatus.stalled
      say(
        String(format: "a rank's watchdog ended the job, and mpirun was still waiting %.1f s later ", Self.abortWait)
          + "for a host it cannot reach; ended mpirun")
    }
    if status != 0, !Self.finalStatuses.contains(status), let line = relay?.failedHostLine() { say(line) }
    return status
  }

  /// How long after a rank's watchdog message launch lets mpirun end the job by itself.
  static let abortWait: Double = 1.5

  /// mpirun's daemons notice a host that stops answering (its link cut, the host down) only through TCP keepalive
  /// on their connections, which Open MPI leaves at 300 s + 9 × 20 s. Probing every second ends such a job within
  /// the ranks' own watchdog time plus a few seconds: after the watchdog (which names the ranks elsewhere), not
  /// before it. The user's own `oob_tcp_keepalive` settings in mpirun-args win.
  static func daemonKeepalive(cluster: ClusterSpec, training: TrainingConfiguration) -> [String] {
    if cluster.mpirunArguments.contains(where: { $0.hasPrefix("oob_tcp_keepalive") }) { return [] }
    let limit = training.stepTimeout ?? 60
    let probes = Int((limit + max(2, 0.2 * limit)).rounded(.up)) + 2
    return [
      "--mca", "oob_tcp_keepalive_time", "1", "--mca", "oob_tcp_keepalive_intvl", "1",
      "--mca", "oob_tcp_keepalive_probes", String(probes),
    ]
  }

  func say(_ text: String) {
    FileHandle.standardError.write(Data(("ddp-train launch: " + text + "\n").utf8))
  }

  /// A `restart` event in the job's metrics file, between the failed attempt's events and the next one's.
  func appendRestartEvent(to path: String?, restart: Int, of maxRestarts: Int, status: Int32, step: Int) throws {
    appendEvent(
      to: path,
      "{\"event\":\"restart\",\"restart\":\(restart),\"max_restarts\":\(maxRestarts),"
        + "\"failed_status\":\(status),\"resume_step\":\(step)}")
  }

  /// One line appended to the job's metrics file, between one attempt's events and the next one's.
  func appendEvent(to path: String?, _ line: String) {
    guard let path, let handle = FileHandle(forWritingAtPath: path) else { return }
    defer { try? handle.close() }
    handle.seekToEndOfFile()
    handle.write(Data((line + "\n").utf8))
  }

  /// The step of the newest complete checkpoint in the job's checkpoint directory, if any.
  func newestCheckpoint(_ training: TrainingConfiguration) throws -> Int? {
    try training.checkpointDirectory.flatMap { try CheckpointDirectory(path: $0).list().first?.step }
  }

  static func writeHostfile(_ path: String, hosts: [ClusterSpec.Host]) throws {
    let lines = hosts.map { "\($0.name) slots=\($0.slots)" }.joined(separator: "\n") + "\n"
    try lines.write(toFile: path, atomically: true, encoding: .utf8)
  }
}

/// launch's SIGTERM and SIGINT handling while a job runs (see `LaunchCommand.runJob`).
enum JobSignals {
  private nonisolated(unsafe) static var process: Process?
  private nonisolated(unsafe) static var received = 0
  private nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []
  private static let lock = NSLock()

  /// True once a stop was asked for: launch then never restarts.
  static var stopRequested: Bool { lock.withLock { received > 0 } }

  static func forward(to child: Process?) {
    lock.withLock {
      process = child
      guard sources.isEmpty else { return }
      signal(SIGINT, SIG_IGN)
      signal(SIGTERM, SIG_IGN)
      sources = [SIGINT, SIGTERM].map { number in
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler { JobSignals.received(number) }
        source.resume()
        return source
      }
    }
  }

  private static func received(_ number: Int32) {
    lock.withLock {
      received += 1
      guard let process, process.isRunning else { return }
      kill(process.processIdentifier, received == 1 ? SIGUSR1 : SIGTERM)
    }
  }
}

/// Passes mpirun's stderr through for a job across hosts, remembering the hosts Open MPI names in its failure
/// reports ("on node X"), so that launch can say which host failed and which ranks ran there. Open MPI maps ranks
/// by slot in hostfile order (launch's hostfile: the cluster's hosts, in order), so host i runs the ranks after
/// the slots of hosts 0 ..< i.
final class FailureRelay: @unchecked Sendable {
  let cluster: ClusterSpec
  private let lock = NSLock()
  private var named: [String] = []
  private var partial = ""
  /// When a rank's watchdog said it was ending the job, and whom it suspected ("ranks 2-3 on ddpt-h2").
  private var watchdogFired: Date?
  private var suspects: String?

  var watchdogFiredAt: Date? { lock.withLock { watchdogFired } }

  init(cluster: ClusterSpec) { self.cluster = cluster }

  /// Copies everything from `handle` to stderr on a thread of its own until end of file.
  func start(reading handle: FileHandle) -> DispatchGroup {
    let group = DispatchGroup()
    group.enter()
    Thread.detachNewThread { [self] in
      while true {
        let data = handle.availableData
        if data.isEmpty { break }
        FileHandle.standardError.write(data)
        scan(String(decoding: data, as: UTF8.self))
      }
      group.leave()
    }
    return group
  }

  private func scan(_ text: String) {
    lock.withLock {
      let lines = (partial + text).split(separator: "\n", omittingEmptySubsequences: false)
      partial = String(lines.last ?? "")
      for line in lines.dropLast() {
        if line.hasPrefix("ddp-train: error: rank "), line.hasSuffix("Ending the job.") {
          if watchdogFired == nil { watchdogFired = Date() }
          if suspects == nil, let range = line.range(of: "not answering may be ") {
            suspects = String(line[range.upperBound...].prefix { $0 != "(" }).trimmingCharacters(in: .whitespaces)
          }
        }
        // The HNP is mpirun's own node, not a failure; everything else "on node X" is.
        guard !line.contains("HNP daemon"), let range = line.range(of: "on node ") else { continue }
        let host = line[range.upperBound...].prefix { !$0.isWhitespace && $0 != "," && $0 != ")" }
        if cluster.hosts.contains(where: { $0.name == host }), !named.contains(String(host)) {
          named.append(String(host))
        }
      }
    }
  }

  /// The ranks of `host` under by-slot mapping.
  func ranks(of host: String) -> ClosedRange<Int>? {
    var first = 0
    for entry in cluster.hosts {
      if entry.name == host { return first...(first + entry.slots - 1) }
      first += entry.slots
    }
    return nil
  }

  /// The hosts Open MPI named in its failure reports, in the order named.
  var namedHosts: [String] { lock.withLock { named } }

  /// "the job failed on host ddpt-h2 (ranks 2-3)", or what is known when Open MPI named no host.
  func failedHostLine() -> String? {
    let (hosts, suspects) = lock.withLock { (named, self.suspects) }
    guard !hosts.isEmpty else {
      if let suspects {
        return "the job failed: \(suspects) stopped answering (that host, its link or its daemon failed)"
      }
      return "the job failed without Open MPI or a watchdog naming a host"
    }
    let parts = hosts.map { host in
      let ranks = ranks(of: host).map {
        $0.count == 1 ? "rank \($0.lowerBound)" : "ranks \($0.lowerBound)-\($0.upperBound)"
      }
      return "host \(host)" + (ranks.map { " (\($0))" } ?? "")
    }
    return "the job failed on " + parts.joined(separator: " and ")
  }
}
