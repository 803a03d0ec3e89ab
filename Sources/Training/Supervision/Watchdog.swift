import Communication
import Foundation

/// Each rank's guard against a stall that MPI never detects (docs/runtime-notes.md: survivors of a hung rank spin in the
/// collective forever).
///
/// The training loop reports progress with `beat(step:phase:)`; a background thread checks every 0.2 s. A rank
/// that spends longer than the timeout in one phase prints who stalled where and aborts the whole job. A rank
/// waiting in a collective gets a grace period on top, so the rank that really stalled (busy or stuck outside
/// any collective) fires first and names itself.
final class Watchdog: @unchecked Sendable {
  enum Phase: Equatable {
    case compute(String)
    case collective(String)

    var description: String {
      switch self {
      case .compute(let what): return what
      case .collective(let what): return "the \(what) (waiting for the other ranks)"
      }
    }
  }

  /// Exit status of a job ended by a watchdog.
  static let exitStatus: Int32 = 4
  /// The automatic timeout: this floor, or 25 typical steps if that is longer.
  static let automaticFloor: Double = 60

  private let lock = NSLock()
  private let communicator: Communicator
  private let configured: Double?
  private let report: @Sendable (String) -> Void
  private var lastBeat = Date()
  private var phase = Phase.compute("starting")
  private var step = 0
  private var typicalStep: Double?
  private var running = false
  /// Where the ranks run, for naming who may have stopped answering (set once the hosts are known).
  private var hosts: RankHosts?

  /// `timeout`: `--step-timeout` in seconds, or nil for the automatic one. `report` prints the message (the job is
  /// aborted right after).
  init(
    communicator: Communicator, timeout: Double?,
    report: @escaping @Sendable (String) -> Void = { message in
      FileHandle.standardError.write(Data(("ddp-train: error: " + message + "\n").utf8))
    }
  ) {
    self.communicator = communicator
    configured = timeout
    self.report = report
  }

  /// The limit in force: the configured one, else max(60 s, 25 × the typical step time).
  var timeout: Double {
    lock.withLock { configured ?? max(Self.automaticFloor, 25 * (typicalStep ?? 0)) }
  }

  func start() {
    lock.withLock {
      running = true
      lastBeat = Date()
    }
    let thread = Thread { [self] in watch() }
    thread.name = "ddp-train watchdog"
    thread.start()
  }

  func stop() { lock.withLock { running = false } }

  /// The hosts of every rank: a stall across hosts is then reported with the ranks elsewhere by host.
  func setHosts(_ hosts: RankHosts) { lock.withLock { self.hosts = hosts } }

  /// Progress: this rank is now at `step`, doing `phase`.
  func beat(step: Int, phase: Phase) {
    lock.withLock {
      lastBeat = Date()
      self.step = step
      self.phase = phase
    }
  }

  /// The typical step duration, measured by the trainer; sets the automatic timeout.
  func setTypicalStep(seconds: Double) { lock.withLock { typicalStep = seconds } }

  private func watch() {
    while true {
      usleep(200_000)
      let (running, elapsed, phase, step, limit, hosts) = lock.withLock {
        let limit = configured ?? max(Self.automaticFloor, 25 * (typicalStep ?? 0))
        return (self.running, Date().timeIntervalSince(lastBeat), self.phase, self.step, limit, self.hosts)
      }
      guard running else { return }
      var allowed = limit
      if case .collective = phase { allowed += max(2, 0.2 * limit) }
      guard elapsed > allowed else { continue }
      let rank = communicator.rank
      let message: String
      switch phase {
      case .compute:
        message =
          "rank \(rank) stalled: no progress for \(String(format: "%.1f", elapsed)) s at step \(step) while \(phase.description) "
          + "(--step-timeout \(String(format: "%g", limit)) s). It is stuck (deadlock, stuck I/O, an endless loop) or "
          + "far slower than expected; ending the job."
      case .collective:
        message =
          "rank \(rank) waited \(String(format: "%.1f", elapsed)) s at step \(step) in \(phase.description) "
          + "(--step-timeout \(String(format: "%g", limit)) s): another rank stopped making progress"
          + (hosts.map { "; " + $0.elsewhere(than: rank) } ?? "") + ". Ending the job."
      }
      report(message)
      communicator.abort(code: Self.exitStatus)
    }
  }
}

/// Which host each rank runs on (gathered once at the start), for messages that name ranks by host.
public struct RankHosts: Sendable, Equatable {
  /// hosts[r] is rank r's host name.
  public var hosts: [String]

  public init(hosts: [String]) { self.hosts = hosts }

  /// Every rank's host name (collective): each rank's `gethostname`, gathered through fixed 64-byte records.
  public static func gather(_ communicator: Communicator) throws -> RankHosts {
    var name = [UInt8](repeating: 0, count: 64)
    let own = Array(ProcessInfo.processInfo.hostName.utf8.prefix(63))
    name.replaceSubrange(0..<own.count, with: own)
    let all = try communicator.allGather(name)
    return RankHosts(
      hosts: (0..<communicator.size).map { rank in
        let record = all[(rank * 64)..<(rank * 64 + 64)].prefix { $0 != 0 }
        return String(decoding: record, as: UTF8.self)
      })
  }

  public var hostCount: Int { Set(hosts).count }

  /// "ranks 2-3 on ddpt-h2": the ranks of each host, in order of their first rank; ranges where contiguous.
  public func describeRanks(_ ranks: [Int]) -> String {
    var order: [String] = []
    var byHost: [String: [Int]] = [:]
    for rank in ranks {
      if byHost[hosts[rank]] == nil { order.append(hosts[rank]) }
      byHost[hosts[rank], default: []].append(rank)
    }
    return order.map { host in
      let list = byHost[host]!
      let text =
        list.count > 1 && list.last! - list.first! == list.count - 1
        ? "ranks \(list.first!)-\(list.last!)"
        : (list.count == 1 ? "rank \(list[0])" : "ranks " + list.map(String.init).joined(separator: ", "))
      return text + " on " + host
    }.joined(separator: ", ")
  }

  /// For a stall seen by `rank`: where it runs and, across hosts, who runs elsewhere (the first suspects when a
  /// host or its link went down).
  func elsewhere(than rank: Int) -> String {
    let others = hosts.indices.filter { hosts[$0] != hosts[rank] }
    guard !others.isEmpty else { return "every rank runs on \(hosts[rank])" }
    return
      "rank \(rank) runs on \(hosts[rank]); not answering may be \(describeRanks(others)) (that host, its link or its daemon may have failed)"
  }
}
