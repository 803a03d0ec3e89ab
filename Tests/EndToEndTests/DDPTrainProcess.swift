import Checkpoints
import Foundation
import Testing

/// Runs the built `ddp-train` as a subprocess, alone or under real `mpirun`, with a hard time limit.
///
/// The test process never calls MPI itself (PLATFORM.md: a singleton MPI_Init poisons the environment for child
/// mpiruns). Output goes to files, not pipes, so a chatty child can never block on a full pipe.
struct DDPTrainProcess {
  struct Result {
    var status: Int32
    var stdout: String
    var stderr: String
    var seconds: Double
    var timedOut: Bool
    var output: String { stdout + stderr }
  }

  /// `DDP_TRAIN_BINARY` (launch/test sets it to the release build), else the binary beside the test bundle.
  static let binary: String = {
    if let path = ProcessInfo.processInfo.environment["DDP_TRAIN_BINARY"], !path.isEmpty { return path }
    let candidates = [
      Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("ddp-train").path,
      Bundle.main.bundleURL.appendingPathComponent("ddp-train").path,
      URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug/ddp-train").path,
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
  }()

  static let mpirunAvailable: Bool = {
    ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].contains { FileManager.default.isExecutableFile(atPath: $0) }
  }()

  /// The environment for children: root allowed under mpirun, one BLAS thread, no inherited MPI state.
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

  /// `ddp-train arguments...` alone.
  static func run(_ arguments: [String], timeout: Double = 120, directory: URL? = nil) throws -> Result {
    try execute([binary] + arguments, timeout: timeout, directory: directory)
  }

  /// `mpirun -np ranks ddp-train arguments...`; mpirun's own --timeout backs up ours.
  static func mpirun(ranks: Int, _ arguments: [String], timeout: Double = 180, directory: URL? = nil) throws -> Result {
    let command = [
      "mpirun", "--oversubscribe", "--timeout", String(Int(timeout)), "--mca", "odls_base_sigkill_timeout", "0",
      "-np", String(ranks), binary,
    ]
    return try execute(command + arguments, timeout: timeout + 10, directory: directory)
  }

  static func execute(_ command: [String], timeout: Double, directory: URL?) throws -> Result {
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
    process.environment = environment
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    if let directory { process.currentDirectoryURL = directory }
    let start = Date()
    try process.run()
    var timedOut = false
    while process.isRunning {
      if Date().timeIntervalSince(start) > timeout {
        timedOut = true
        process.terminate()
        usleep(500_000)
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        break
      }
      usleep(20_000)
    }
    process.waitUntilExit()
    try out.close()
    try err.close()
    return Result(
      status: process.terminationStatus,
      stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
      stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
      seconds: Date().timeIntervalSince(start), timedOut: timedOut)
  }
}

/// A fresh temporary directory for one test, removed by the caller's `defer`.
func makeScratchDirectory(_ label: String) throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("ddp-train-\(label)-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

/// The final model of a run: the newest checkpoint's tensors, flattened in file order.
func finalParameters(in checkpointDirectory: URL) throws -> [Float] {
  let directory = CheckpointDirectory(path: checkpointDirectory.path)
  guard let newest = try directory.list().first else {
    Issue.record("no checkpoint in \(checkpointDirectory.path)")
    return []
  }
  let bytes = try directory.read(CheckpointDirectory.modelFile, of: newest)
  return try SafeTensors.decode(bytes, path: newest.path).tensors.flatMap(\.values)
}

/// max|a − b| / max|b|, the relative distance of two parameter vectors.
func relativeDistance(_ a: [Float], _ b: [Float]) -> Double {
  precondition(a.count == b.count)
  var difference = 0.0
  var scale = 0.0
  for index in a.indices {
    difference = max(difference, abs(Double(a[index]) - Double(b[index])))
    scale = max(scale, abs(Double(b[index])))
  }
  return difference / max(scale, 1e-30)
}

/// nil when `a` and `b` are bitwise identical; otherwise how many elements differ and the first of them (a short
/// message, where comparing the arrays themselves would print hundreds of thousands of numbers).
func bitwiseDifference(_ a: [Float], _ b: [Float]) -> String? {
  guard a.count == b.count else { return "sizes differ: \(a.count) vs \(b.count)" }
  let differing = a.indices.filter { a[$0].bitPattern != b[$0].bitPattern }
  guard let first = differing.first else { return nil }
  return "\(differing.count) of \(a.count) elements differ; first at \(first): \(a[first]) vs \(b[first])"
}
