import Foundation
import Tensors

/// Decoded samples kept on disk once per host, so that the ranks of a host map one file instead of each decoding
/// (decompressing a `.gz`, inflating an `.npz` member, decoding PNGs) its own copy.
///
/// An entry is a `.npy` file named after its source and the source's version:
/// `<file name>-<hash of the source's path and member>-<hash of its size, time or checksum>.npy`, so it opens with
/// `numpy.load` too. Entries are built under an exclusive `flock` on `<source hash>.lock`: the first rank of a host
/// builds, the others wait and then map what it built. A build writes `<entry>.tmp-<pid>`, syncs it and renames it
/// into place, so no rank ever maps half of an entry, and a build that fails or dies leaves no entry (its temporary
/// file is removed by the next build under the lock). An entry of the same source with another version is stale:
/// it is removed once the new one is in place, with a note on standard error.
public struct DatasetCache: Sendable {
  public let directory: String

  public init(directory: String) { self.directory = directory }

  /// `--cache-dir`, else `$XDG_CACHE_HOME/ddp-train`, else `$HOME/.cache/ddp-train`. Not next to the data: data
  /// directories such as `/usr/share/datasets` are not writable.
  public static func resolve(_ option: String?, environment: [String: String] = ProcessInfo.processInfo.environment)
    -> DatasetCache
  {
    if let option { return DatasetCache(directory: option) }
    if let xdg = environment["XDG_CACHE_HOME"], !xdg.isEmpty { return DatasetCache(directory: xdg + "/ddp-train") }
    let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
    return DatasetCache(directory: home + "/.cache/ddp-train")
  }

  /// The path of the entry for `source` (what the samples are: an absolute path, and the member or split) at
  /// `version` (what the source is now: sizes and times, or a checksum), built by `build` first when the host has
  /// none. `name` is the readable part of the entry's file name.
  public func entry(
    source: String, version: String, name: String, build: (CacheFileWriter) throws(DatasetError) -> Void
  ) throws(DatasetError) -> String {
    try makeDirectory()
    let sourceKey = Self.hex(source)
    let prefix = Self.sanitize(name) + "-" + sourceKey + "-"
    let path = directory + "/" + prefix + Self.hex(version) + ".npy"
    let lockPath = directory + "/" + sourceKey + ".lock"
    let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard lock >= 0 else { throw unwritable(errno) }
    defer { close(lock) }
    while flock(lock, LOCK_EX) != 0 {
      guard errno == EINTR else { throw unwritable(errno) }
    }
    if access(path, F_OK) == 0 { return path }
    let others = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
      $0.hasPrefix(prefix)
    }
    // Under the lock no build is running, so a temporary file of this source is a dead build's.
    for leftover in others where leftover.contains(".tmp-") { unlink(directory + "/" + leftover) }
    let stale = others.filter { $0.hasSuffix(".npy") }
    let temporary = path + ".tmp-\(getpid())"
    let writer = try CacheFileWriter(path: temporary, cache: self)
    do throws(DatasetError) {
      try build(writer)
      try writer.finish()
    } catch {
      writer.abandon()
      throw error
    }
    guard rename(temporary, path) == 0 else {
      let code = errno
      unlink(temporary)
      throw unwritable(code)
    }
    for old in stale {
      unlink(directory + "/" + old)
      FileHandle.standardError.write(
        Data(
          "ddp-train: note: the cached samples of \(source) no longer matched it (its size, time or checksum changed); rebuilt as \(path)\n"
            .utf8))
    }
    return path
  }

  /// What the cache calls a file: its absolute path (symbolic links resolved), and its version: its size,
  /// modification time (nanoseconds) and inode, which change when it is rewritten.
  static func identity(of path: String) -> (source: String, version: String) {
    let absolute = absolutePath(path)
    var info = stat()
    guard stat(path, &info) == 0 else { return (absolute, "unknown") }
    return (absolute, "\(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec) \(info.st_ino)")
  }

  static func absolutePath(_ path: String) -> String {
    URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
  }

  private func makeDirectory() throws(DatasetError) {
    do {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
      throw DatasetError(
        path: directory,
        problem: "the cache directory cannot be created (\((error as NSError).localizedDescription))",
        hint: Self.hint)
    }
  }

  func unwritable(_ code: Int32) -> DatasetError {
    DatasetError(
      path: directory, problem: "the cache directory cannot be written (\(String(cString: strerror(code))))",
      hint: Self.hint)
  }

  static let hint =
    "Pass --cache-dir with a writable directory: decoded samples are kept there, one copy per host"

  /// 16 hex digits of FNV-1a 64: a name, not a security measure.
  static func hex(_ text: String) -> String {
    var hash = FNV1a64()
    Array(text.utf8).withUnsafeBytes { hash.combine($0) }
    return String(format: "%016llx", hash.value)
  }

  private static func sanitize(_ name: String) -> String {
    String(name.map { $0.isLetter || $0.isNumber || "._-".contains($0) ? $0 : "_" }.prefix(60))
  }
}

/// Writes a cache entry's temporary file in large buffered writes, every failure phrased as the cache's.
public final class CacheFileWriter {
  private let path: String
  private let cache: DatasetCache
  private var descriptor: Int32
  private var buffer: [UInt8] = []
  private static let flushSize = 1 << 22

  init(path: String, cache: DatasetCache) throws(DatasetError) {
    self.path = path
    self.cache = cache
    descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else { throw cache.unwritable(errno) }
    buffer.reserveCapacity(Self.flushSize)
  }

  deinit { if descriptor >= 0 { close(descriptor) } }

  public func write(_ bytes: UnsafeRawBufferPointer) throws(DatasetError) {
    if buffer.count + bytes.count > Self.flushSize { try flush() }
    if bytes.count >= Self.flushSize {
      try writeAll(bytes)
    } else {
      buffer.append(contentsOf: bytes)
    }
  }

  public func write(_ bytes: [UInt8]) throws(DatasetError) {
    let result: Result<Void, DatasetError> = bytes.withUnsafeBytes { raw in
      do throws(DatasetError) { return .success(try write(raw)) } catch { return .failure(error) }
    }
    try result.get()
  }

  private func flush() throws(DatasetError) {
    let pending = buffer
    buffer.removeAll(keepingCapacity: true)
    let result: Result<Void, DatasetError> = pending.withUnsafeBytes { raw in
      do throws(DatasetError) { return .success(try writeAll(raw)) } catch { return .failure(error) }
    }
    try result.get()
  }

  private func writeAll(_ bytes: UnsafeRawBufferPointer) throws(DatasetError) {
    var done = 0
    while done < bytes.count {
      let wrote = Foundation.write(descriptor, bytes.baseAddress! + done, bytes.count - done)
      if wrote < 0 && errno == EINTR { continue }
      guard wrote > 0 else { throw cache.unwritable(wrote < 0 ? errno : ENOSPC) }
      done += wrote
    }
  }

  /// Flushes, syncs and closes: the file is whole on disk before it is renamed into place.
  func finish() throws(DatasetError) {
    try flush()
    guard fsync(descriptor) == 0 else { throw cache.unwritable(errno) }
    close(descriptor)
    descriptor = -1
  }

  func abandon() {
    if descriptor >= 0 { close(descriptor) }
    descriptor = -1
    unlink(path)
  }
}
