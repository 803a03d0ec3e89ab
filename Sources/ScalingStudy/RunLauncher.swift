import Foundation

/// How one training ended, as the study records it in `runs/<id>.json`.
public struct RunOutcome: Codable, Equatable, Sendable {
  public var id: String
  /// The command line as launched (argv).
  public var command: [String]
  public var exitStatus: Int32
  public var seconds: Double
  public var timedOut: Bool
  /// The last lines of the run's output when it failed (not for success or divergence).
  public var errorTail: String?
  /// The host's 1-minute load average when the run started: how busy the cores already were (speeds are
  /// only comparable between runs that saw similar load).
  public var loadAverage: Double?

  public init(
    id: String, command: [String], exitStatus: Int32, seconds: Double, timedOut: Bool,
    errorTail: String?
  ) {
    self.id = id
    self.command = command
    self.exitStatus = exitStatus
    self.seconds = seconds
    self.timedOut = timedOut
    self.errorTail = errorTail
  }
}

/// Starts one planned training and waits for it. The real one runs mpirun; tests may substitute another.
public protocol RunLauncher {
  /// The argv that `launch` runs, for the report.
  func command(for run: PlannedRun, metricsPath: String) -> [String]
  /// Runs it with stdout and stderr appended to `logPath`.
  func launch(_ run: PlannedRun, metricsPath: String, logPath: String, timeout: Double) throws
    -> RunOutcome
}

/// Each training through `mpirun` (`MPIRunCommand`); mpirun's own --timeout backs up ours.
public struct MPIRunLauncher: RunLauncher {
  public var binary: String
  public var mpirun: String
  public var cores: Int
  public var isRoot: Bool

  public init(binary: String, mpirun: String = "mpirun", cores: Int, isRoot: Bool) {
    self.binary = binary
    self.mpirun = mpirun
    self.cores = cores
    self.isRoot = isRoot
  }

  public func oversubscribes(workers: Int) -> Bool { mpirunCommand(ranks: workers).oversubscribes }

  func mpirunCommand(ranks: Int) -> MPIRunCommand {
    MPIRunCommand(mpirun: mpirun, ranks: ranks, cores: cores, isRoot: isRoot)
  }

  public func command(for run: PlannedRun, metricsPath: String) -> [String] {
    mpirunCommand(ranks: run.workers).words(program: [binary] + run.trainArguments + ["--metrics", metricsPath])
  }

  public func launch(_ run: PlannedRun, metricsPath: String, logPath: String, timeout: Double)
    throws -> RunOutcome
  {
    var mpirun = mpirunCommand(ranks: run.workers)
    mpirun.mpirunArguments = ["--timeout", String(Int(timeout.rounded(.up)))]
    let command = mpirun.words(program: [binary] + run.trainArguments + ["--metrics", metricsPath])
    _ = FileManager.default.createFile(
      atPath: logPath, contents: Data(("$ " + command.joined(separator: " ") + "\n").utf8))
    let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
    defer { try? log.close() }
    log.seekToEndOfFile()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    process.environment = Self.childEnvironment
    process.standardOutput = log
    process.standardError = log
    process.standardInput = FileHandle.nullDevice
    var loads = [0.0, 0.0, 0.0]
    let loadAverage = getloadavg(&loads, 3) >= 1 ? loads[0] : nil
    let start = Date()
    do { try process.run() } catch {
      throw StudyError.launch("could not start \(mpirun): \(error). Is openmpi-bin installed?")
    }
    RunningChild.set(process)
    defer { RunningChild.set(nil) }
    var timedOut = false
    while process.isRunning {
      // A little beyond mpirun's own --timeout, so that mpirun normally ends the job itself.
      if Date().timeIntervalSince(start) > timeout + 15 {
        timedOut = true
        process.terminate()
        usleep(2_000_000)
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        break
      }
      usleep(50_000)
    }
    process.waitUntilExit()
    let seconds = Date().timeIntervalSince(start)
    let status =
      process.terminationReason == .uncaughtSignal
      ? 128 + process.terminationStatus : process.terminationStatus
    if RunningChild.interrupted { throw StudyError.interrupted }
    timedOut = timedOut || (status != 0 && seconds >= timeout)
    var tail: String?
    if status != 0 && status != 3 {
      let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
      tail = text.split(separator: "\n").suffix(8).joined(separator: "\n")
    }
    var outcome = RunOutcome(
      id: run.id, command: command, exitStatus: status, seconds: seconds, timedOut: timedOut,
      errorTail: tail)
    outcome.loadAverage = loadAverage
    return outcome
  }

  /// Ours, without MPI state inherited from a parent job, with one BLAS thread and short crash reports.
  static var childEnvironment: [String: String] {
    var environment = ProcessInfo.processInfo.environment.filter { key, _ in
      !key.hasPrefix("OMPI_") && !key.hasPrefix("PMIX_") && !key.hasPrefix("PMI_")
    }
    environment["OPENBLAS_NUM_THREADS"] = "1"
    environment["SWIFT_BACKTRACE"] = "enable=no"
    return environment
  }
}

/// The training in progress, so that Ctrl-C can be passed on to it (mpirun then ends its ranks).
enum RunningChild {
  nonisolated(unsafe) private static var process: Process?
  nonisolated(unsafe) private(set) static var interrupted = false
  private static let lock = NSLock()

  static func set(_ child: Process?) {
    lock.lock()
    defer { lock.unlock() }
    process = child
  }

  static func interrupt() {
    lock.lock()
    defer { lock.unlock() }
    interrupted = true
    process?.interrupt()
  }
}

/// Why the study could not go on (not a training's failure: those are recorded in the report).
public enum StudyError: Error, CustomStringConvertible {
  case launch(String)
  case io(path: String, message: String)
  case interrupted

  public var description: String {
    switch self {
    case .launch(let message): return message
    case .io(let path, let message): return "\(path): \(message)"
    case .interrupted: return "interrupted; the runs finished so far are in the report folder"
    }
  }
}
