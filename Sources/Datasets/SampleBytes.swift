import Foundation

/// How one stored pixel is held: a byte scaled by 1/255 when a batch is assembled (PyTorch's `ToTensor`), or a
/// float taken as it is.
public enum PixelFormat: String, Sendable, Codable {
  case uint8
  case float32

  public var byteCount: Int { self == .uint8 ? 1 : 4 }
}

/// The order of a stored sample's values: `[c, h, w]` (PyTorch's, the network's) or `[h, w, c]` (NumPy users' and
/// Keras's). Channels-last samples are transposed to `[c, h, w]` as a batch is assembled, so a channels-last file is
/// used as it is, never rewritten.
public enum ImageLayout: String, CaseIterable, Sendable, Codable {
  case nchw
  case nhwc
}

/// The bytes of a split's samples, read-only, wherever they live: in this process's own memory, or a read-only
/// mapping of a file, which every rank of a host shares through the page cache (one copy per host, however many
/// ranks).
///
/// Invariant: `base ..< base + count` stays valid and unchanged for the object's lifetime.
public final class SampleBytes: @unchecked Sendable {
  public let base: UnsafeRawPointer
  public let count: Int
  /// Whether the bytes are a mapping of a file (`true`) or this process's own copy.
  public let isMapped: Bool
  private let release: () -> Void

  /// A private copy of `bytes`.
  public convenience init(copying bytes: UnsafeRawBufferPointer) {
    let storage = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
    if let source = bytes.baseAddress { storage.copyMemory(from: source, byteCount: bytes.count) }
    self.init(owning: storage, count: bytes.count)
  }

  /// A private copy of `bytes` (copied inside `withUnsafeBytes`: the pointer is valid only there).
  public convenience init(_ bytes: [UInt8]) {
    let storage = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
    bytes.withUnsafeBytes { if let source = $0.baseAddress { storage.copyMemory(from: source, byteCount: $0.count) } }
    self.init(owning: storage, count: bytes.count)
  }

  /// Takes ownership of `storage` (allocated with `UnsafeMutableRawPointer.allocate`), which it deallocates.
  public init(owning storage: UnsafeMutableRawPointer, count: Int) {
    base = UnsafeRawPointer(storage)
    self.count = count
    isMapped = false
    release = { storage.deallocate() }
  }

  /// `count` bytes at `offset` of `file`, which stays mapped while this object lives.
  init(mapping file: MappedFile, offset: Int, count: Int) {
    precondition(offset >= 0 && offset + count <= file.size, "the bytes must lie within the mapping")
    base = file.base + offset
    self.count = count
    isMapped = true
    release = { withExtendedLifetime(file) {} }
  }

  deinit { release() }

  public var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
}

/// A whole file mapped read-only and shared (`MAP_SHARED`): the pages are the page cache's, so every process that
/// maps the file uses the same physical memory for it.
final class MappedFile {
  let path: String
  let base: UnsafeRawPointer
  let size: Int

  init(path: String) throws(DatasetError) {
    self.path = path
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
      let reason = String(cString: strerror(errno))
      throw DatasetError(
        path: path, problem: "cannot open the file (\(reason))", hint: "Check the path and its permissions")
    }
    defer { close(descriptor) }
    var info = stat()
    guard fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
      throw DatasetError(
        path: path, problem: "expected a data file, found a directory or a special file",
        hint: "Name the file itself")
    }
    size = Int(info.st_size)
    guard size > 0 else {
      throw DatasetError(path: path, problem: "the file is empty (0 bytes)", hint: "Write the file again")
    }
    guard let mapping = mmap(nil, size, PROT_READ, MAP_SHARED, descriptor, 0), mapping != MAP_FAILED else {
      let reason = String(cString: strerror(errno))
      throw DatasetError(path: path, problem: "cannot map the file into memory (\(reason))", hint: "Check the file")
    }
    base = UnsafeRawPointer(mapping)
  }

  deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }

  var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }
}
