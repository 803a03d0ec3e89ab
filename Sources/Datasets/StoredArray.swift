import Foundation

/// `--data-copies`: how many copies of the samples a host holds in memory.
public enum DataCopies: String, CaseIterable, Sendable, Codable {
  /// One per host: the ranks map the same file (the data file itself when its samples can be used as they are
  /// stored, else a decoded copy in the cache) and the page cache holds it once.
  case host
  /// One per rank, read into each rank's own memory (the trainer's behaviour before mappings); no cache is written
  /// except for image folders, whose decoding the cache saves.
  case rank
}

/// One array of a NumPy file as it is stored, before it is in memory: its header and where its bytes are.
struct StoredArray {
  enum Location {
    /// The data is at `offset` of a mapped file (a `.npy`, or a stored `.npz` member).
    case mapped(MappedFile, offset: Int)
    /// A deflated `.npz` member; the data follows the header in the inflated bytes.
    case deflated(ZipArchive, ZipArchive.Member)
  }

  /// For messages: `FILE.npy`, or `FILE.npz:x_train.npy`.
  let name: String
  let header: NumPyHeader
  let location: Location
  /// What the cache calls it (the absolute path, and the member) and its version (the file's size and time).
  let cacheSource: String
  let cacheVersion: String
  /// The readable part of a cache entry's name.
  let cacheName: String

  /// A `.npy` file.
  static func open(npy path: String) throws(DatasetError) -> StoredArray {
    let file = try MappedFile(path: path)
    let header = try NumPyHeader.parse(file.bytes, path: path)
    try checkSize(header, available: file.size - header.dataOffset, name: path)
    let (source, version) = DatasetCache.identity(of: path)
    return StoredArray(
      name: path, header: header, location: .mapped(file, offset: header.dataOffset), cacheSource: source,
      cacheVersion: version, cacheName: ((path as NSString).lastPathComponent as NSString).deletingPathExtension)
  }

  /// Member `member` (e.g. `x_train.npy`) of an `.npz` archive.
  static func open(_ member: ZipArchive.Member, of archive: ZipArchive) throws(DatasetError) -> StoredArray {
    let name = "\(archive.path):\(member.name)"
    let (source, version) = DatasetCache.identity(of: archive.path)
    let cacheName =
      ((archive.path as NSString).lastPathComponent as NSString).deletingPathExtension + "-"
      + (member.name as NSString).deletingPathExtension
    if member.method == 0 {
      let bytes = archive.storedBytes(of: member)
      let header = try NumPyHeader.parse(bytes, path: name)
      try checkSize(header, available: bytes.count - header.dataOffset, name: name)
      return StoredArray(
        name: name, header: header, location: .mapped(archive.file, offset: member.dataOffset + header.dataOffset),
        cacheSource: source + ":" + member.name, cacheVersion: version, cacheName: cacheName)
    }
    // The header is in the first inflated bytes: inflate until it is whole (NumPy's headers are a few hundred bytes;
    // 1 MiB is far beyond any).
    var prefix: [UInt8] = []
    try archive.inflate(member) { chunk throws(DatasetError) in
      prefix.append(contentsOf: chunk.prefix(max(0, (1 << 20) - prefix.count)))
      return prefix.count < (1 << 20)
    }
    let header = try rethrowingDatasetError { try prefix.withUnsafeBytes { try NumPyHeader.parse($0, path: name) } }
    try checkSize(header, available: member.size - header.dataOffset, name: name)
    return StoredArray(
      name: name, header: header, location: .deflated(archive, member), cacheSource: source + ":" + member.name,
      cacheVersion: version, cacheName: cacheName)
  }

  /// The data must be exactly what the shape and type declare: less is a truncated file, more is not NumPy's.
  private static func checkSize(_ header: NumPyHeader, available: Int, name: String) throws(DatasetError) {
    guard available == header.dataByteCount else {
      throw DatasetError(
        path: name,
        problem:
          available < header.dataByteCount
          ? "truncated array: its shape \(header.shape) of \(header.type) needs \(header.dataByteCount) bytes of data, found \(max(available, 0))"
          : "\(available - header.dataByteCount) bytes follow the \(header.dataByteCount) bytes of data its shape \(header.shape) of \(header.type) declares",
        hint: "Write the array again with numpy.save or numpy.savez, and check that the file was copied whole")
    }
  }

  /// The data bytes as stored, handed to `body`: a view of the mapping, or the member inflated into memory.
  func withStoredData<Result>(_ body: (UnsafeRawBufferPointer) throws(DatasetError) -> Result) throws(DatasetError)
    -> Result
  {
    switch location {
    case .mapped(let file, let offset):
      return try body(UnsafeRawBufferPointer(rebasing: file.bytes[offset..<offset + header.dataByteCount]))
    case .deflated(let archive, let member):
      let data = UnsafeMutableRawPointer.allocate(byteCount: max(header.dataByteCount, 1), alignment: 64)
      defer { data.deallocate() }
      try inflateData(archive, member) { chunk, at throws(DatasetError) in
        (data + at).copyMemory(from: chunk.baseAddress!, byteCount: chunk.count)
      }
      return try body(UnsafeRawBufferPointer(start: data, count: header.dataByteCount))
    }
  }

  /// The member's data after its header, in chunks, each with its offset in the data.
  private func inflateData(
    _ archive: ZipArchive, _ member: ZipArchive.Member,
    _ sink: (UnsafeRawBufferPointer, Int) throws(DatasetError) -> Void
  ) throws(DatasetError) {
    var position = 0
    try archive.inflate(member) { chunk throws(DatasetError) in
      let skip = max(0, header.dataOffset - position)
      if skip < chunk.count {
        try sink(UnsafeRawBufferPointer(rebasing: chunk[skip...]), position + skip - header.dataOffset)
      }
      position += chunk.count
      return true
    }
  }

  /// The array as samples: uint8 or float32, C order, little-endian. Used where it lies when it is stored so
  /// (`copies` host: a mapping; rank: a private copy); otherwise decoded once, into the cache (host) or into this
  /// process's memory (rank). Any other element type is an input error.
  func samples(copies: DataCopies, cache: DatasetCache) throws(DatasetError) -> (SampleBytes, PixelFormat) {
    let format = try pixelFormat()
    let inPlace = !header.fortranOrder && !header.type.bigEndian
    if inPlace, case .mapped(let file, let offset) = location, offset % format.byteCount == 0 {
      let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[offset..<offset + header.dataByteCount])
      return copies == .host
        ? (SampleBytes(mapping: file, offset: offset, count: header.dataByteCount), format)
        : (SampleBytes(copying: bytes), format)
    }
    if copies == .rank {
      let storage = UnsafeMutableRawPointer.allocate(byteCount: max(header.dataByteCount, 1), alignment: 64)
      let samples = SampleBytes(owning: storage, count: header.dataByteCount)
      try withStoredData { stored throws(DatasetError) in canonicalize(stored, into: storage) }
      return (samples, format)
    }
    let descr = format == .uint8 ? "|u1" : "<f4"
    let entry = try cache.entry(source: cacheSource, version: cacheVersion, name: cacheName) {
      writer throws(DatasetError) in
      try writer.write(NumPyHeader.encode(descr: descr, shape: header.shape))
      if inPlace, case .deflated(let archive, let member) = location {
        try inflateData(archive, member) { chunk, _ throws(DatasetError) in try writer.write(chunk) }
        return
      }
      let storage = UnsafeMutableRawPointer.allocate(byteCount: max(header.dataByteCount, 1), alignment: 64)
      defer { storage.deallocate() }
      try withStoredData { stored throws(DatasetError) in canonicalize(stored, into: storage) }
      try writer.write(UnsafeRawBufferPointer(start: storage, count: header.dataByteCount))
    }
    let cached = try StoredArray.open(npy: entry)
    guard cached.header.shape == header.shape, cached.header.type.pixelFormat == format,
      case .mapped(let file, let offset) = cached.location
    else {
      throw DatasetError(
        path: entry, problem: "the cache entry does not hold the array of \(name)",
        hint: "Remove the file; the next run builds it again")
    }
    return (SampleBytes(mapping: file, offset: offset, count: header.dataByteCount), format)
  }

  /// How the images are held in memory: uint8 or float32 (of either byte order); any other type is an input error.
  func pixelFormat() throws(DatasetError) -> PixelFormat {
    guard let format = header.type.pixelFormat else {
      throw DatasetError(
        path: name,
        problem: "the images are \(header.type); expected uint8 (scaled by 1/255) or float32 (used as they are)",
        hint: "Convert them first, e.g. x.astype(numpy.uint8) or x.astype(numpy.float32)")
    }
    return format
  }

  /// `stored` (this array's bytes as stored) into `output` in C order, little-endian.
  private func canonicalize(_ stored: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) {
    let size = header.type.size
    let shape = header.shape
    if header.fortranOrder && shape.count > 1 {
      // Fortran order: axis 0 fastest. Walk the output in C order with an odometer over the indices.
      var strides = [Int](repeating: size, count: shape.count)
      for axis in 1..<shape.count { strides[axis] = strides[axis - 1] * shape[axis - 1] }
      var index = [Int](repeating: 0, count: shape.count)
      var source = 0
      let last = shape.count - 1
      for element in 0..<header.elementCount {
        (output + element * size).copyMemory(from: stored.baseAddress! + source, byteCount: size)
        var axis = last
        while axis >= 0 {
          index[axis] += 1
          source += strides[axis]
          if index[axis] < shape[axis] { break }
          source -= strides[axis] * shape[axis]
          index[axis] = 0
          axis -= 1
        }
      }
    } else {
      output.copyMemory(from: stored.baseAddress!, byteCount: header.dataByteCount)
    }
    if header.type.bigEndian {
      let words = output.assumingMemoryBound(to: UInt32.self)
      for i in 0..<header.elementCount { words[i] = words[i].byteSwapped }
    }
  }

  /// Label arrays: any integer type, shaped [N] or [N, 1] (Keras's CIFAR labels); their values, widened.
  func labels() throws(DatasetError) -> [Int64] {
    guard header.type.kind == .unsignedInteger || header.type.kind == .signedInteger else {
      throw DatasetError(
        path: name, problem: "the labels are \(header.type); expected an integer type (uint8, int32, int64, ...)",
        hint: "Save class numbers, e.g. y.astype(numpy.int64)")
    }
    guard header.shape.count == 1 || (header.shape.count == 2 && header.shape[1] == 1) else {
      throw DatasetError(
        path: name, problem: "the labels have shape \(header.shape); expected [N] (one class number per sample)",
        hint: "Save a flat array of class numbers, e.g. y.reshape(-1)")
    }
    let type = header.type
    return try withStoredData { stored throws(DatasetError) in
      (0..<header.elementCount).map { type.integer(at: $0, of: stored) }
    }
  }
}
