import Foundation

/// The IDX format of MNIST and Fashion-MNIST: a big-endian header, then raw unsigned bytes.
///
///     images: magic 0x00000803, count, rows, columns (4 bytes each), then count·rows·columns pixel bytes
///     labels: magic 0x00000801, count, then count label bytes
///
/// The magic's third byte is the element type (0x08 = unsigned byte), the fourth the number of dimensions.
/// Files may be plain or gzip-compressed (name ends in `.gz`). Everything is validated, and every problem is a
/// `DatasetError` naming the file, the expected and the found values.
public enum IDX {
  static let imagesMagic: UInt32 = 0x0000_0803
  static let labelsMagic: UInt32 = 0x0000_0801
  /// Far beyond any image dataset this trainer can hold: each side at most 4096, at most 4 GiB of pixels, and
  /// a count that fits the sampler's Int32 indices.
  static let maxSide = 4096
  static let maxCount = Int(Int32.max)
  static let maxPixelBytes = 1 << 32

  /// Reads an images file; `pixels` is `[count, rows·columns]` row-major.
  public static func readImages(path: String) throws(DatasetError) -> (
    count: Int, rows: Int, columns: Int, pixels: [UInt8]
  ) {
    let (reader, count, rows, columns) = try openImages(path: path)
    let what = "pixels (\(count) images of \(rows)x\(columns))"
    let pixels = try readBody(reader, count: count * rows * columns, headerBytes: 16, what: what)
    return (count, rows, columns, pixels)
  }

  /// The images of a file as `copies` asks: in this process's memory (rank), or mapped so that the ranks of a host
  /// share them (host): a plain file where it lies, a `.gz` file decompressed once per host into `cache`.
  static func images(path: String, copies: DataCopies, cache: DatasetCache) throws(DatasetError) -> (
    count: Int, rows: Int, columns: Int, samples: SampleBytes
  ) {
    guard copies == .host else {
      let image = try readImages(path: path)
      return (image.count, image.rows, image.columns, SampleBytes(image.pixels))
    }
    let (reader, count, rows, columns) = try openImages(path: path)
    let bytes = count * rows * columns
    let what = "pixels (\(count) images of \(rows)x\(columns))"
    let file: MappedFile
    let offset: Int
    if reader.isGzip {
      let (source, version) = DatasetCache.identity(of: path)
      let entry = try cache.entry(source: source, version: version, name: (path as NSString).lastPathComponent) {
        writer throws(DatasetError) in
        // `reader` stands just past the header it checked.
        try writer.write(NumPyHeader.encode(descr: "|u1", shape: [count, rows, columns]))
        try streamBody(reader, count: bytes, headerBytes: 16, what: what) { chunk throws(DatasetError) in
          try writer.write(chunk)
        }
      }
      file = try MappedFile(path: entry)
      offset = try NumPyHeader.parse(file.bytes, path: entry).dataOffset
    } else {
      if reader.fileSize - 16 < bytes {
        throw truncated(path, what: what, expected: bytes, found: reader.fileSize - 16)
      }
      if reader.fileSize - 16 > bytes {
        throw trailing(path, extra: reader.fileSize - 16 - bytes, headerBytes: 16, count: bytes, what: what)
      }
      file = try MappedFile(path: path)
      offset = 16
    }
    guard file.size - offset == bytes else {
      throw DatasetError(
        path: file.path, problem: "holds \(file.size - offset) bytes of pixels; expected \(bytes)",
        hint: "Remove the file if it is a cache entry; the next run builds it again")
    }
    return (count, rows, columns, SampleBytes(mapping: file, offset: offset, count: bytes))
  }

  /// Opens an images file and checks its header.
  private static func openImages(path: String) throws(DatasetError) -> (
    reader: ByteReader, count: Int, rows: Int, columns: Int
  ) {
    let reader = try ByteReader(path: path)
    let header = try readHeader(reader, magic: imagesMagic)
    let (count, rows, columns) = (header[0], header[1], header[2])
    guard count > 0, count <= maxCount, rows > 0, rows <= maxSide, columns > 0, columns <= maxSide,
      count * rows * columns <= maxPixelBytes
    else {
      throw DatasetError(
        path: path,
        problem:
          "the header declares \(count) images of \(rows)x\(columns); expected 1...\(maxCount) images "
          + "with sides in 1...\(maxSide) and at most \(maxPixelBytes) pixel bytes",
        hint: DatasetError.redownloadHint)
    }
    return (reader, count, rows, columns)
  }

  /// Reads a labels file; every label must be in `0..<classCount`.
  public static func readLabels(path: String, classCount: Int) throws(DatasetError) -> [UInt8] {
    precondition(classCount > 0 && classCount <= 256, "IDX labels are bytes: classCount must be in 1...256")
    let reader = try ByteReader(path: path)
    let count = try readHeader(reader, magic: labelsMagic)[0]
    guard count > 0, count <= maxCount else {
      throw DatasetError(
        path: path, problem: "the header declares \(count) labels; expected 1...\(maxCount)",
        hint: DatasetError.redownloadHint)
    }
    let labels = try readBody(reader, count: count, headerBytes: 8, what: "labels")
    if let index = labels.firstIndex(where: { Int($0) >= classCount }) {
      throw DatasetError(
        path: path,
        problem:
          "label at index \(index) is \(labels[index]); expected a value in 0..<\(classCount) "
          + "(classCount \(classCount))",
        hint: "Check that the file belongs to a \(classCount)-class dataset, or download it again")
    }
    return labels
  }

  /// Reads and checks the magic and the dimension sizes that follow it.
  private static func readHeader(_ reader: ByteReader, magic expected: UInt32) throws(DatasetError)
    -> [Int]
  {
    let dimensions = Int(expected & 0xff)
    let headerBytes = 4 * (1 + dimensions)
    var header = [UInt8](repeating: 0, count: headerBytes)
    let got = try reader.read(into: &header)
    let kind = expected == imagesMagic ? "images" : "labels"
    let magic = got >= 4 ? bigEndianWord(header, at: 0) : nil
    if let magic, magic != expected {
      throw DatasetError(
        path: reader.path,
        problem: "wrong magic number: expected \(hex(expected)) (IDX \(kind)), found \(hex(magic))"
          + describe(magic: magic, expected: expected),
        hint:
          "Check which file is which: the loader expects train-images-idx3-ubyte, train-labels-idx1-ubyte, "
          + "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz)")
    }
    guard got == headerBytes else {
      throw DatasetError(
        path: reader.path,
        problem:
          "the file is too short for an IDX \(kind) header (expected \(headerBytes) bytes, found \(got))",
        hint: DatasetError.redownloadHint)
    }
    return (0..<dimensions).map { Int(bigEndianWord(header, at: 4 * (1 + $0))) }
  }

  /// Reads exactly `count` data bytes, then checks that nothing follows them.
  private static func readBody(_ reader: ByteReader, count: Int, headerBytes: Int, what: String)
    throws(DatasetError)
    -> [UInt8]
  {
    // A plain file's size is known: refuse a truncated one before allocating.
    if !reader.isGzip, reader.fileSize - headerBytes < count {
      throw truncated(
        reader.path, what: what, expected: count, found: reader.fileSize - headerBytes)
    }
    var failure: DatasetError?
    var got = 0
    let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
      do throws(DatasetError) {
        got = try reader.read(into: UnsafeMutableRawBufferPointer(buffer))
      } catch {
        failure = error
      }
      initialized = got
    }
    if let failure { throw failure }
    guard got == count else {
      throw truncated(reader.path, what: what, expected: count, found: got)
    }
    let extra = try reader.remainingByteCount()
    guard extra == 0 else {
      throw trailing(reader.path, extra: extra, headerBytes: headerBytes, count: count, what: what)
    }
    return bytes
  }

  /// `readBody` in chunks, for data too large to want twice in memory: `sink` gets the bytes in order.
  private static func streamBody(
    _ reader: ByteReader, count: Int, headerBytes: Int, what: String,
    into sink: (UnsafeRawBufferPointer) throws(DatasetError) -> Void
  ) throws(DatasetError) {
    let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 22, alignment: 64)
    defer { chunk.deallocate() }
    var got = 0
    while got < count {
      let want = min(chunk.count, count - got)
      let read = try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: chunk[0..<want]))
      guard read > 0 else { throw truncated(reader.path, what: what, expected: count, found: got) }
      try sink(UnsafeRawBufferPointer(rebasing: chunk[0..<read]))
      got += read
    }
    let extra = try reader.remainingByteCount()
    guard extra == 0 else {
      throw trailing(reader.path, extra: extra, headerBytes: headerBytes, count: count, what: what)
    }
  }

  private static func trailing(_ path: String, extra: Int, headerBytes: Int, count: Int, what: String) -> DatasetError {
    DatasetError(
      path: path,
      problem: "trailing garbage: expected the data to end after \(headerBytes + count) bytes "
        + "(\(headerBytes)-byte header and \(count) bytes of \(what)), found \(extra) more bytes",
      hint: DatasetError.redownloadHint)
  }

  private static func truncated(_ path: String, what: String, expected: Int, found: Int)
    -> DatasetError
  {
    DatasetError(
      path: path, problem: "truncated data: expected \(expected) bytes of \(what), found \(found)",
      hint: DatasetError.redownloadHint)
  }

  private static func describe(magic: UInt32, expected: UInt32) -> String {
    switch magic {
    case labelsMagic: return "; this looks like a labels file"
    case imagesMagic: return "; this looks like an images file"
    case _ where magic >> 16 == 0x1f8b:
      return "; this looks like gzip data: name the file with a .gz suffix"
    case _ where magic >> 16 == 0 && (magic >> 8) & 0xff != 0x08:
      return
        "; the element type is \(String(format: "0x%02x", (magic >> 8) & 0xff)), only unsigned bytes (0x08) are supported"
    case _ where magic >> 8 == 0x08:
      return
        "; an unsigned-byte IDX file with \(magic & 0xff) dimensions, expected \(expected & 0xff)"
    default: return "; this is not an IDX file"
    }
  }

  private static func bigEndianWord(_ bytes: [UInt8], at offset: Int) -> UInt32 {
    bytes[offset..<offset + 4].reduce(0) { ($0 << 8) | UInt32($1) }
  }

  private static func hex(_ value: UInt32) -> String { String(format: "0x%08x", value) }
}
