#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One checkpoint: the step it was taken after and its folder, `DIR/step-<8-digit step>`.
public struct CheckpointLocation: Equatable, Sendable {
  public var step: Int
  public var path: String

  public init(step: Int, path: String) {
    self.step = step
    self.path = path
  }
}

/// The folder of checkpoints, written by rank 0 only.
///
/// Note [Complete checkpoints]: a folder `step-XXXXXXXX` exists under its final name only when it holds all
/// of its files, fsynced. `write` builds it as `.tmp-step-XXXXXXXX-<pid>`, fsyncs every file and the folder,
/// renames it, then fsyncs DIR; `list` also checks that the three files are there, so a folder damaged
/// by hand or by a partial `prune` is never resumed from.
public struct CheckpointDirectory: Sendable {
  public let path: String
  /// Called by `write` after each file is synced into the temporary folder (with the step and the file's name):
  /// lets fault-injection tests kill the process at an exact point inside a write.
  public var fileWrittenHook: (@Sendable (_ step: Int, _ file: String) -> Void)?

  public init(path: String) {
    self.path = path
  }

  public static let modelFile = "model.safetensors", optimizerFile = "optimizer.safetensors",
    stateFile = "state.json"
  static let requiredFiles = [modelFile, optimizerFile, stateFile]
  /// Present only in checkpoints of runs that carry reducer state between steps (`--compress` across hosts);
  /// listed with its SHA-256 in state.json when present.
  public static let reducerStateFile = "reducer-state.safetensors"
  /// How the folder of a checkpoint still being written begins (`.tmp-step-<8 digits>-<pid>`).
  public static let temporaryPrefix = ".tmp-"

  /// For validation before training starts, writing nothing: OK if `path` does not exist but its parent is (or can be) a
  /// writable directory, or it is a writable directory; CheckpointError if it is a file, or not writable.
  public func validateWritable() throws(CheckpointError) {
    // Walk up to the nearest folder that exists: `write` would create everything below it.
    var candidate = path
    while true {
      let kind = FileSystem.kind(candidate)
      // ENOTDIR: a component of `candidate` is a file, which the walk up will reach.
      let missing = kind == .missing || (kind == nil && errno == ENOTDIR)
      switch kind {
      case _ where missing:
        let up = FileSystem.parent(candidate)
        guard up != candidate else { throw FileSystem.osError(path, "stat") }
        candidate = up
      case .directory:
        guard access(candidate, W_OK | X_OK) == 0 else {
          let problem =
            candidate == path
            ? "the directory" : "the directory \(candidate), where it would be created,"
          throw CheckpointError(
            path: path, problem: "\(problem) is not writable (\(String(cString: strerror(errno))))",
            hint: FileSystem.hint)
        }
        return
      case .regularFile, .other:
        let problem =
          candidate == path
          ? "exists but is not a directory"
          : "cannot be created because \(candidate) is not a directory"
        throw CheckpointError(path: path, problem: problem, hint: FileSystem.hint)
      case .missing, nil:
        throw FileSystem.osError(path, "stat \(candidate)")
      }
    }
  }

  /// Creates the directory if needed, writes `files` into "DIR/.tmp-step-XXXXXXXX-<pid>/", fsyncs each file, renames the
  /// folder to "DIR/step-XXXXXXXX" (replacing an existing one of the same step only after the new one is complete),
  /// fsyncs DIR. Returns the final location. Throws CheckpointError (with the OS error text) on any failure, leaving no
  /// folder under a final name.
  ///
  /// `step` must be in 0...99_999_999 and the file names plain, unique names (programmer mistakes).
  public func write(step: Int, files: [(name: String, bytes: [UInt8])]) throws(CheckpointError)
    -> CheckpointLocation
  {
    precondition((0...99_999_999).contains(step), "step \(step) does not fit in 8 digits")
    precondition(Set(files.map(\.name)).count == files.count, "duplicate checkpoint file names")
    for file in files {
      precondition(
        !file.name.isEmpty && !file.name.contains("/") && file.name != "." && file.name != "..",
        "bad checkpoint file name \"\(file.name)\"")
    }

    try FileSystem.makeDirectories(path)
    let folder = Self.folderName(step)
    let pid = getpid()
    let temporary = FileSystem.join(path, Self.temporaryPrefix + "\(folder)-\(pid)")
    let final = FileSystem.join(path, folder)
    // Left by an earlier process with the same pid that died while writing.
    try FileSystem.removeTree(temporary)
    do throws(CheckpointError) {
      guard mkdir(temporary, 0o755) == 0 else { throw FileSystem.osError(temporary, "mkdir") }
      for file in files {
        try FileSystem.writeSynced(FileSystem.join(temporary, file.name), file.bytes)
        fileWrittenHook?(step, file.name)
      }
      try FileSystem.syncDirectory(temporary)
      if FileSystem.kind(final) == .missing {
        try FileSystem.move(temporary, to: final)
      } else {
        // rename(2) cannot replace a non-empty folder: move the old one aside, put the new one in place,
        // and only then delete the old one.
        let old = FileSystem.join(path, ".old-\(folder)-\(pid)")
        try FileSystem.removeTree(old)
        try FileSystem.move(final, to: old)
        do throws(CheckpointError) {
          try FileSystem.move(temporary, to: final)
        } catch {
          try? FileSystem.move(old, to: final)
          throw error
        }
        try FileSystem.syncDirectory(path)
        try? FileSystem.removeTree(old)
      }
      try FileSystem.syncDirectory(path)
    } catch {
      try? FileSystem.removeTree(temporary)
      throw error
    }
    return CheckpointLocation(step: step, path: final)
  }

  /// Complete checkpoints (folders named step-<8 digits> holding the three files), newest (highest step) first.
  /// Temporary folders and anything else are ignored. A missing DIR gives [].
  public func list() throws(CheckpointError) -> [CheckpointLocation] {
    switch FileSystem.kind(path) {
    case .missing: return []
    case .directory: break
    case .regularFile, .other:
      throw CheckpointError(
        path: path, problem: "exists but is not a directory", hint: FileSystem.hint)
    case nil: throw FileSystem.osError(path, "stat")
    }
    var locations: [CheckpointLocation] = []
    for name in try FileSystem.entries(path) {
      guard let step = Self.step(ofFolder: name) else { continue }
      let folder = FileSystem.join(path, name)
      guard FileSystem.kind(folder) == .directory,
        Self.requiredFiles.allSatisfy({
          FileSystem.kind(FileSystem.join(folder, $0)) == .regularFile
        })
      else { continue }
      locations.append(CheckpointLocation(step: step, path: folder))
    }
    return locations.sorted { $0.step > $1.step }
  }

  /// Deletes all but the newest `keep` complete checkpoints (never a temporary folder of a write in progress).
  ///
  /// Incomplete `step-` folders and anything else in DIR are left alone.
  public func prune(keep: Int) throws(CheckpointError) {
    precondition(keep >= 0, "keep must be ≥ 0")
    let doomed = try list().dropFirst(keep)
    guard !doomed.isEmpty else { return }
    for location in doomed { try FileSystem.removeTree(location.path) }
    try FileSystem.syncDirectory(path)
  }

  /// Reads one file of a checkpoint; CheckpointError if missing/unreadable.
  public func read(_ file: String, of location: CheckpointLocation) throws(CheckpointError)
    -> [UInt8]
  {
    let filePath = FileSystem.join(location.path, file)
    guard FileSystem.kind(filePath) != .missing else {
      throw CheckpointError(
        path: filePath, problem: "the checkpoint has no \(file)",
        hint: "The checkpoint is incomplete; delete it or use another one")
    }
    do {
      return try FileSystem.readFile(filePath)
    } catch {
      throw CheckpointError(
        path: error.path, problem: error.problem,
        hint: "Check the file's permissions, or use another checkpoint")
    }
  }

  /// "step-00000042".
  static func folderName(_ step: Int) -> String {
    let digits = String(step)
    return "step-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
  }

  /// 42 for "step-00000042"; nil for any other name (exactly 8 ASCII digits are required).
  static func step(ofFolder name: String) -> Int? {
    let utf8 = Array(name.utf8)
    guard utf8.count == 13, name.hasPrefix("step-"),
      utf8[5...].allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
    else { return nil }
    return Int(name.dropFirst(5))
  }
}
