import Checkpoints
import Foundation

extension Trainer {
  /// Checks, on rank 0, everything about the output locations that can fail before anything is written,
  /// and loads the checkpoint to resume from. Errors are input errors (exit 2). Writes nothing.
  func prepareOutputs() throws -> LoadedCheckpoint? {
    guard communicator.isCoordinator else { return nil }
    if let metricsPath = configuration.metricsPath { try Self.validateMetricsPath(metricsPath) }
    guard let checkpoints = checkpointing.directory else { return nil }
    try checkpoints.validateWritable()
    // One job per directory. Locked first when the lock file exists (so a second job is told so, whatever else
    // it asks), else once every check has passed; either way nothing is written before then (an input error
    // leaves the directory as it was).
    checkpointing.lock = try CheckpointLock.acquire(checkpoints, create: false)
    var resumeFrom: LoadedCheckpoint?
    if configuration.resume {
      let checkpoint = try loadNewestCheckpoint(from: checkpoints)
      try checkResumable(checkpoint)
      resumeFrom = checkpoint
    } else if !configuration.startFresh, let newest = try checkpoints.list().first {
      throw CheckpointError(
        path: checkpoints.path,
        problem: "already holds checkpoints of a run (newest \((newest.path as NSString).lastPathComponent))",
        hint:
          "Pass --resume to continue it, --start-fresh to train anew (replacing same-step folders), or another --checkpoint-dir."
      )
    }
    if checkpointing.lock == nil { checkpointing.lock = try CheckpointLock.acquire(checkpoints, create: true) }
    let since = ISO8601DateFormatter().string(from: Date())
    checkpointing.lock?.record(
      owner: "pid \(getpid()) on \(ProcessInfo.processInfo.hostName) since \(since): "
        + CommandLine.arguments.map(shellQuoted).joined(separator: " "))
    return resumeFrom
  }

  static func validateMetricsPath(_ path: String) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
      if isDirectory.boolValue {
        throw ConfigurationError(
          option: "--metrics", expected: "a file path for JSON Lines", found: "the directory \(path)")
      }
      if !FileManager.default.isWritableFile(atPath: path) {
        throw ConfigurationError(option: "--metrics", expected: "a writable file", found: "\(path) is not writable")
      }
      return
    }
    // Walk up from the absolute path to the first existing ancestor: it must be a writable directory.
    var parent = (URL(fileURLWithPath: path).standardizedFileURL.path as NSString).deletingLastPathComponent
    while !FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory) {
      let up = (parent as NSString).deletingLastPathComponent
      if up.isEmpty || up == parent { break }
      parent = up
    }
    if !isDirectory.boolValue || !FileManager.default.isWritableFile(atPath: parent) {
      throw ConfigurationError(
        option: "--metrics", expected: "a path inside a writable directory",
        found: "\(path) (\(parent) is not a writable directory)")
    }
  }
}
