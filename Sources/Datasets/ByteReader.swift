import CZlib
import Foundation

/// Sequential reads from a plain or a gzip-compressed file, every failure already phrased as a `DatasetError`.
///
/// A name ending in `.gz` means gzip: the 1f 8b magic is checked here first, because `gzread` would silently pass a
/// plain file through. Decompression is zlib's `gzread` in large chunks (C speed even in a debug build).
final class ByteReader {
  let path: String
  let isGzip: Bool
  /// Bytes on disk (compressed size for gzip).
  let fileSize: Int
  private var plain: UnsafeMutablePointer<FILE>?
  private var gz: gzFile?

  /// gzread takes an `unsigned` length; 16 MiB chunks keep it far from overflow and the call count small.
  private static let chunk = 1 << 24

  init(path: String) throws(DatasetError) {
    self.path = path
    isGzip = path.hasSuffix(".gz")
    var info = stat()
    guard stat(path, &info) == 0 else {
      let reason = String(cString: strerror(errno))
      throw DatasetError(
        path: path, problem: "cannot open the file (\(reason))",
        hint: "Check the path, or pass --data-dir with the directory that holds the IDX files")
    }
    guard (info.st_mode & S_IFMT) == S_IFREG else {
      let found = (info.st_mode & S_IFMT) == S_IFDIR ? "a directory" : "not a regular file"
      throw DatasetError(
        path: path, problem: "expected an IDX data file, found \(found)",
        hint: "Name the file itself, or pass --data-dir with the directory that holds the IDX files"
      )
    }
    fileSize = Int(info.st_size)
    guard fileSize > 0 else {
      throw DatasetError(
        path: path, problem: "the file is empty (expected an IDX file, found 0 bytes)",
        hint: DatasetError.redownloadHint)
    }
    guard let file = fopen(path, "rb") else {
      let reason = String(cString: strerror(errno))
      throw DatasetError(
        path: path, problem: "cannot open the file (\(reason))",
        hint: "Check the file's permissions")
    }
    guard isGzip else {
      plain = file
      return
    }
    var magic: [UInt8] = [0, 0]
    let got = fread(&magic, 1, 2, file)
    fclose(file)
    guard got == 2, magic == [0x1f, 0x8b] else {
      let found = magic.prefix(got).map { String(format: "%02x", $0) }.joined(separator: " ")
      throw DatasetError(
        path: path,
        problem:
          "the name ends in .gz but the file is not gzip data (expected magic bytes 1f 8b, found \(found))",
        hint: "Download the file again, or remove the .gz suffix if it is an uncompressed IDX file")
    }
    guard let handle = gzopen(path, "rb") else {
      let reason = String(cString: strerror(errno))
      throw DatasetError(
        path: path, problem: "cannot open the file (\(reason))",
        hint: "Check the file's permissions")
    }
    gzbuffer(handle, 1 << 20)
    gz = handle
  }

  deinit {
    if let plain { fclose(plain) }
    if let gz { gzclose(gz) }
  }

  /// Fills `buffer` completely unless the data ends first; returns the number of bytes read.
  /// A corrupt or cut-off gzip stream throws rather than returning a short count.
  func read(into buffer: UnsafeMutableRawBufferPointer) throws(DatasetError) -> Int {
    guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
    var total = 0
    while total < buffer.count {
      let want = min(buffer.count - total, Self.chunk)
      let got: Int
      if let plain {
        got = fread(base + total, 1, want, plain)
        if got < want && ferror(plain) != 0 {
          let reason = String(cString: strerror(errno))
          throw DatasetError(
            path: path, problem: "cannot read the file (\(reason))",
            hint: "Check the disk and the file")
        }
      } else {
        got = Int(gzread(gz, base + total, UInt32(want)))
        if got < want { try checkGzipState() }
      }
      if got <= 0 { break }
      total += got
    }
    return total
  }

  /// `read(into:)` over an array's storage (whose `withUnsafeMutableBytes` cannot rethrow a typed error).
  func read(into bytes: inout [UInt8]) throws(DatasetError) -> Int {
    let result: Result<Int, DatasetError> = bytes.withUnsafeMutableBytes { raw in
      do throws(DatasetError) { return .success(try read(into: raw)) } catch {
        return .failure(error)
      }
    }
    return try result.get()
  }

  /// Counts the bytes left (at most `limit`, to stay bounded on a huge file).
  func remainingByteCount(limit: Int = 1 << 30) throws(DatasetError) -> Int {
    if plain != nil {
      let position = ftell(plain)
      return position < 0 ? 0 : max(0, fileSize - position)
    }
    var scratch = [UInt8](repeating: 0, count: 1 << 16)
    var total = 0
    while total < limit {
      let got = try read(into: &scratch)
      total += got
      if got < scratch.count { break }
    }
    return total
  }

  /// After a short `gzread`: a clean end of the stream is fine, anything else is the file's fault.
  private func checkGzipState() throws(DatasetError) {
    var code: Int32 = 0
    var message = gzerror(gz, &code).map { String(cString: $0) } ?? ""
    // zlib prefixes its message with the path, which the error already names.
    if message.hasPrefix(path + ": ") { message.removeFirst(path.count + 2) }
    switch code {
    case Z_OK:
      return
    case Z_BUF_ERROR:
      throw DatasetError(
        path: path, problem: "the gzip stream ends early; the file is truncated (zlib: \(message))",
        hint: DatasetError.redownloadHint)
    default:
      throw DatasetError(
        path: path, problem: "the gzip stream is corrupt (zlib error \(code): \(message))",
        hint: DatasetError.redownloadHint)
    }
  }
}
