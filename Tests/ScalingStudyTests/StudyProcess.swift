import Foundation

/// Runs the built `ddp-train` as a subprocess with a hard time limit (the parts of EndToEndTests' DDPTrainProcess
/// this target needs). The test process never calls MPI itself; output goes to files, never a pipe that can fill.
struct StudyProcess {
  struct Result {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
    var output: String { stdout + stderr }
  }

  /// `DDP_TRAIN_BINARY` (launch/test sets it to the release build), else the binary beside the test bundle.
  static let binary: String = {
    if let path = ProcessInfo.processInfo.environment["DDP_TRAIN_BINARY"], !path.isEmpty {
      return path
    }
    let candidates = [
      Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("ddp-train").path,
      Bundle.main.bundleURL.appendingPathComponent("ddp-train").path,
      URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug/ddp-train").path,
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
  }()

  static let mpirunAvailable: Bool = {
    ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].contains {
      FileManager.default.isExecutableFile(atPath: $0)
    }
  }()

  /// Children get no inherited MPI state, root allowed under mpirun, one BLAS thread, short crash reports.
  static var environment: [String: String] {
    var environment = ProcessInfo.processInfo.environment.filter { key, _ in
      !key.hasPrefix("OMPI_") && !key.hasPrefix("PMIX_") && !key.hasPrefix("PMI_")
    }
    environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    environment["OPENBLAS_NUM_THREADS"] = "1"
    environment["SWIFT_BACKTRACE"] = "enable=no"
    return environment
  }

  /// `ddp-train arguments...`; killed (and reported as timed out) after `timeout` seconds.
  static func run(_ arguments: [String], timeout: Double) throws -> Result {
    let scratch = try makeScratchDirectory("out")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let outURL = scratch.appendingPathComponent("stdout")
    let errURL = scratch.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL)
    let err = try FileHandle(forWritingTo: errURL)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = arguments
    process.environment = environment
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    let start = Date()
    try process.run()
    var timedOut = false
    while process.isRunning {
      if Date().timeIntervalSince(start) > timeout {
        timedOut = true
        // SIGINT: the study passes it on to its mpirun, which ends the ranks.
        process.interrupt()
        usleep(3_000_000)
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        break
      }
      usleep(50_000)
    }
    process.waitUntilExit()
    try out.close()
    try err.close()
    return Result(
      status: process.terminationStatus,
      stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
      stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "", timedOut: timedOut)
  }
}

/// A fresh temporary directory for one test, removed by the caller's `defer`.
func makeScratchDirectory(_ label: String) throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent(
    "ddp-train-\(label)-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}
