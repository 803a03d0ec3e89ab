#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One job at a time per checkpoint directory: rank 0 holds an exclusive `flock` on `DIR/.lock` for the job's
/// lifetime (the descriptor stays open until the process ends, however it ends). The file's text names the job
/// that holds it (pid, host, start time, command), for the message a second job gets. A lock left by a job that
/// died is no lock at all: the kernel released it with the process, so the next job takes it over and rewrites
/// the text. (flock is per host; on a network file system shared by several hosts it may not exclude.)
public final class CheckpointLock {
  public static let fileName = ".lock"
  private let descriptor: Int32
  private let path: String

  private init(descriptor: Int32, path: String) {
    self.descriptor = descriptor
    self.path = path
  }

  /// Takes the lock, or throws a `CheckpointError` naming the job holding it. Writes nothing: with `create`
  /// false, a directory without a lock file gives nil (nobody holds it; `create` it once the run is sure to go
  /// on); with `create` true the directory and the file are made when missing. `record` then names the holder.
  public static func acquire(_ directory: CheckpointDirectory, create: Bool) throws(CheckpointError)
    -> CheckpointLock?
  {
    let path = FileSystem.join(directory.path, fileName)
    if create { try FileSystem.makeDirectories(directory.path) }
    // Held read-only: a descriptor open for writing would keep the file system from being remounted read-only
    // (EBUSY), and a job's lock must not be what stops an administrator.
    let descriptor = open(path, O_RDONLY | O_CLOEXEC | (create ? O_CREAT : 0), 0o644)
    if descriptor < 0 && errno == ENOENT && !create { return nil }
    guard descriptor >= 0 else { throw FileSystem.osError(path, "open") }
    guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
      let code = errno
      var holder = [UInt8](repeating: 0, count: 4096)
      let count = read(descriptor, &holder, holder.count)
      close(descriptor)
      guard code == EWOULDBLOCK else { throw FileSystem.osError(path, "flock", code) }
      let text = String(decoding: holder.prefix(max(count, 0)), as: UTF8.self)
        .split(whereSeparator: \.isNewline).joined(separator: " ")
      throw CheckpointError(
        path: directory.path,
        problem: "is in use by another job that is still running (\(text.isEmpty ? "unknown" : text))",
        hint: "Wait for it to end, stop it (SIGUSR1 or SIGTERM), or give this job another --checkpoint-dir")
    }
    return CheckpointLock(descriptor: descriptor, path: path)
  }

  /// Records who holds the lock (replacing what a previous holder wrote): `owner` names the job for others.
  /// Written through a descriptor of its own, closed at once (closing it keeps the flock, which belongs to the
  /// held descriptor's open file). Best effort: the text only improves another job's message.
  public func record(owner: String) {
    let bytes = Array((owner + "\n").utf8)
    let writer = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
    guard writer >= 0 else { return }
    _ = bytes.withUnsafeBytes { write(writer, $0.baseAddress, $0.count) }
    close(writer)
  }

  deinit { close(descriptor) }
}
