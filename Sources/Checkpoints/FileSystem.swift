#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The few POSIX file operations the checkpoint directory needs, each failing with a `CheckpointError`
/// that carries the OS error text (`strerror`). Foundation's FileManager is not used: it hides `fsync`
/// and reports errors without the errno text.
enum FileSystem {
  static let hint =
    "Check that --checkpoint-dir names a writable directory on a disk with free space"

  enum Kind: Equatable {
    case missing
    case directory
    case regularFile
    case other
  }

  static func osError(_ path: String, _ doing: String, _ code: Int32 = errno) -> CheckpointError {
    CheckpointError(
      path: path, problem: "\(doing) failed: \(String(cString: strerror(code)))", hint: hint)
  }

  static func join(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
  }

  /// The folder holding `path`: "a/b" → "a", "b" → ".", "/b" → "/", "/" → "/".
  static func parent(_ path: String) -> String {
    var trimmed = Substring(path)
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
    guard let slash = trimmed.lastIndex(of: "/") else { return "." }
    var head = trimmed[..<slash]
    while head.hasSuffix("/") { head = head.dropLast() }
    return head.isEmpty ? "/" : String(head)
  }

  /// What `path` is, following symbolic links; `nil` with `errno` set when `stat` fails for another
  /// reason than a missing entry (ENOTDIR, EACCES, ...).
  static func kind(_ path: String) -> Kind? {
    var info = stat()
    guard stat(path, &info) == 0 else { return errno == ENOENT ? .missing : nil }
    switch info.st_mode & S_IFMT {
    case S_IFDIR: return .directory
    case S_IFREG: return .regularFile
    default: return .other
    }
  }

  /// `mkdir -p`.
  static func makeDirectories(_ path: String) throws(CheckpointError) {
    switch kind(path) {
    case .directory: return
    case .missing: break
    case .regularFile, .other:
      throw CheckpointError(path: path, problem: "exists but is not a directory", hint: hint)
    case nil: throw osError(path, "stat")
    }
    let up = parent(path)
    if up != path { try makeDirectories(up) }
    guard mkdir(path, 0o755) == 0 || (errno == EEXIST && kind(path) == .directory) else {
      throw osError(path, "mkdir")
    }
  }

  /// Writes a new file (it must not exist) and fsyncs it before returning.
  static func writeSynced(_ path: String, _ bytes: [UInt8]) throws(CheckpointError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw osError(path, "open for writing") }
    var failure: CheckpointError?
    bytes.withUnsafeBytes { raw in
      var done = 0
      while done < raw.count {
        let count = write(fd, raw.baseAddress! + done, raw.count - done)
        if count < 0 {
          if errno == EINTR { continue }
          failure = osError(path, "write")
          return
        }
        done += count
      }
    }
    if failure == nil && fsync(fd) != 0 { failure = osError(path, "fsync") }
    if close(fd) != 0 && failure == nil { failure = osError(path, "close") }
    if let failure { throw failure }
  }

  /// The whole content of a file.
  static func readFile(_ path: String) throws(CheckpointError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw osError(path, "open for reading") }
    defer { close(fd) }
    var info = stat()
    var bytes: [UInt8] = []
    if fstat(fd, &info) == 0 { bytes.reserveCapacity(Int(info.st_size)) }
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
      let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
      if count < 0 {
        if errno == EINTR { continue }
        throw osError(path, "read")
      }
      if count == 0 { return bytes }
      bytes.append(contentsOf: chunk[0..<count])
    }
  }

  /// Makes the directory's entries (created, renamed, removed files) durable.
  static func syncDirectory(_ path: String) throws(CheckpointError) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw osError(path, "open directory") }
    defer { close(fd) }
    // Some file systems cannot fsync a directory (EINVAL); their renames are then as durable as they get.
    guard fsync(fd) == 0 || errno == EINVAL else { throw osError(path, "fsync directory") }
  }

  /// The names in a directory, without "." and "..".
  static func entries(_ path: String) throws(CheckpointError) -> [String] {
    guard let directory = opendir(path) else { throw osError(path, "opendir") }
    defer { closedir(directory) }
    var names: [String] = []
    while true {
      errno = 0
      guard let entry = readdir(directory) else {
        if errno != 0 { throw osError(path, "readdir") }
        return names
      }
      let name = withUnsafePointer(to: entry.pointee.d_name) {
        $0.withMemoryRebound(
          to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)
        ) {
          String(cString: $0)
        }
      }
      if name != "." && name != ".." { names.append(name) }
    }
  }

  /// `rm -r`: removes a file, or a directory and everything in it (symbolic links are removed, not followed).
  static func removeTree(_ path: String) throws(CheckpointError) {
    var info = stat()
    guard lstat(path, &info) == 0 else {
      if errno == ENOENT { return }
      throw osError(path, "lstat")
    }
    if info.st_mode & S_IFMT == S_IFDIR {
      for name in try entries(path) { try removeTree(join(path, name)) }
      guard rmdir(path) == 0 else { throw osError(path, "rmdir") }
    } else {
      guard unlink(path) == 0 else { throw osError(path, "unlink") }
    }
  }

  static func move(_ from: String, to: String) throws(CheckpointError) {
    guard rename(from, to) == 0 else { throw osError(to, "rename from \(from)") }
  }
}

extension CheckpointError {
  /// A file-system call on `path` failed because the path was missing (ENOENT). Under a checkpoint directory that
  /// a job holds, where nothing else should delete, it means someone is removing the directory. (`osError`'s text.)
  public var isMissingPath: Bool { problem.hasSuffix(" failed: \(String(cString: strerror(ENOENT)))") }
}
