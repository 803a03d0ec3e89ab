import Foundation

/// Runs the built `ddp-train` as a subprocess, alone or under real `mpirun`, with a hard time limit.
///
/// The test process never calls MPI itself (docs/runtime-notes.md: a singleton MPI_Init poisons the environment for child
/// mpiruns). Output goes to files, not pipes, so a chatty child can never block on a full pipe.
public struct DDPTrainProcess {
  public struct Result {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var seconds: Double
    public var timedOut: Bool
    /// The signal that ended the process, when one did (`status` is then that signal's number).
    public var signal: Int32?
    public var output: String { stdout + stderr }
  }

  /// `DDP_TRAIN_BINARY` (launch/test sets it to the release build), else the binary beside the test bundle.
  public static let binary: String = {
    if let path = ProcessInfo.processInfo.environment["DDP_TRAIN_BINARY"], !path.isEmpty { return path }
    let candidates = [
      Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("ddp-train").path,
      Bundle.main.bundleURL.appendingPathComponent("ddp-train").path,
      URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug/ddp-train").path,
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
  }()

  public static let mpirunAvailable: Bool = {
    ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].contains { FileManager.default.isExecutableFile(atPath: $0) }
  }()

  /// The environment for children: root allowed under mpirun, one BLAS thread, no inherited MPI state.
  public static var environment: [String: String] {
    var environment = ProcessInfo.processInfo.environment.filter { key, _ in
      !key.hasPrefix("OMPI_") && !key.hasPrefix("PMIX_") && !key.hasPrefix("PMI_")
    }
    environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    environment["OPENBLAS_NUM_THREADS"] = "1"
    environment["SWIFT_BACKTRACE"] = "enable=no"
    // Decoded samples (Fashion-MNIST's .gz files among them) go to one cache of the test runs, not the user's.
    environment["XDG_CACHE_HOME"] =
      FileManager.default.temporaryDirectory.appendingPathComponent(
        "ddp-train-test-cache"
      ).path
    return environment
  }

  /// `ddp-train arguments...` alone.
  /// `stopSignal` and `grace`: how a child that outlives `timeout` is stopped before SIGKILL (SIGINT with a few
  /// seconds lets `ddp-train scaling` end its own mpirun first).
  /// `extraEnvironment` is added to `environment` (LD_PRELOAD, say).
  /// `inheritBlockedSignals`: start the child with the test runner's blocked-signal mask (nearly every signal
  /// blocked), as a thread pool or another runtime may start it; by default it starts with none blocked.
  public static func run(
    _ arguments: [String], timeout: Double = 120, directory: URL? = nil, stopSignal: Int32 = SIGTERM,
    grace: Double = 0.5, extraEnvironment: [String: String] = [:], inheritBlockedSignals: Bool = false,
    during: (@Sendable (pid_t) -> Void)? = nil
  ) throws -> Result {
    try execute(
      [binary] + arguments, timeout: timeout, directory: directory, stopSignal: stopSignal, grace: grace,
      extraEnvironment: extraEnvironment, inheritBlockedSignals: inheritBlockedSignals, during: during)
  }

  /// `mpirun -np ranks ddp-train arguments...`; mpirun's own --timeout backs up ours. The ranks on this host
  /// inherit mpirun's environment, `extraEnvironment` included.
  /// `sigkillTimeout`: mpirun's odls_base_sigkill_timeout, the seconds between its SIGTERM and SIGKILL to ranks
  /// it tears down (0: at once; Open MPI's default is 1).
  public static func mpirun(
    ranks: Int, _ arguments: [String], timeout: Double = 180, directory: URL? = nil, sigkillTimeout: Int = 0,
    extraEnvironment: [String: String] = [:], during: (@Sendable (pid_t) -> Void)? = nil
  ) throws -> Result {
    let command = [
      "mpirun", "--oversubscribe", "--timeout", String(Int(timeout)), "--mca", "odls_base_sigkill_timeout",
      String(sigkillTimeout), "-np", String(ranks), binary,
    ]
    return try execute(
      command + arguments, timeout: timeout + 10, directory: directory, extraEnvironment: extraEnvironment,
      during: during)
  }

  /// `during`, when given, runs on another thread once the process has started, with its pid: to signal it, kill
  /// one of its ranks, or change its files while it runs. The call still returns only when the process has ended.
  public static func execute(
    _ command: [String], timeout: Double, directory: URL?, stopSignal: Int32 = SIGTERM, grace: Double = 0.5,
    extraEnvironment: [String: String] = [:], inheritBlockedSignals: Bool = false,
    during: (@Sendable (pid_t) -> Void)? = nil
  ) throws -> Result {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("ddp-train-out-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let outURL = scratch.appendingPathComponent("stdout")
    let errURL = scratch.appendingPathComponent("stderr")
    FileManager.default.createFile(atPath: outURL.path, contents: nil)
    FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL)
    let err = try FileHandle(forWritingTo: errURL)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    process.environment = environment.merging(extraEnvironment) { _, extra in extra }
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    if let directory { process.currentDirectoryURL = directory }
    let start = Date()
    if inheritBlockedSignals {
      // Block them here too, whatever this thread had: the child must see them blocked.
      var all = sigset_t()
      var previous = sigset_t()
      sigfillset(&all)
      pthread_sigmask(SIG_SETMASK, &all, &previous)
      defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
      try process.run()
    } else {
      try withNoSignalsBlocked { try process.run() }
    }
    let helper = DispatchGroup()
    if let during {
      let pid = process.processIdentifier
      DispatchQueue.global().async(group: helper) { during(pid) }
    }
    var timedOut = false
    while process.isRunning {
      if Date().timeIntervalSince(start) > timeout {
        timedOut = true
        kill(process.processIdentifier, stopSignal)
        usleep(UInt32(grace * 1_000_000))
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        break
      }
      usleep(20_000)
    }
    process.waitUntilExit()
    let seconds = Date().timeIntervalSince(start)
    helper.wait()
    try out.close()
    try err.close()
    return Result(
      status: process.terminationStatus,
      stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
      stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
      seconds: seconds, timedOut: timedOut,
      signal: process.terminationReason == .uncaughtSignal ? process.terminationStatus : nil)
  }
}

/// Runs `body` (which starts a child) with no signal blocked in this thread. A child inherits the blocked-signal
/// mask of the thread that starts it, and the test runner's threads block nearly every signal: an mpirun started
/// from one would never see the SIGTERM or SIGUSR1 a test sends it.
func withNoSignalsBlocked<T>(_ body: () throws -> T) rethrows -> T {
  var none = sigset_t()
  var previous = sigset_t()
  sigemptyset(&none)
  pthread_sigmask(SIG_SETMASK, &none, &previous)
  defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
  return try body()
}

/// A fresh temporary directory for one test, removed by the caller's `defer`.
public func makeScratchDirectory(_ label: String) throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("ddp-train-\(label)-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}
