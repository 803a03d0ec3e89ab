import CPNG
import Foundation
import Tensors

/// `--dataset folder --data-dir DIR`: PNG images in class folders, as torchvision's `ImageFolder` reads them:
///
///     DIR/train/<class>/*.png    DIR/test/<class>/*.png
///
/// Classes are the train folder's subfolders sorted by name (label 0 is the first); a test class folder must be one
/// of them. A split's samples are its images sorted by class, then by file name. Every image has the first training
/// image's size. The samples are gray (one channel) when every image of both splits is gray, else RGB (three; gray
/// images are replicated). Transparent pixels are composited onto black. PNG is decoded by libpng.
///
/// Decoding is the slow part, so each split is decoded once per host into the cache (`DatasetCache`), as a
/// `[N, C, H, W]` uint8 `.npy` that the host's ranks map (whatever `--data-copies` says). The cache entry's version
/// is a checksum of both splits' listings (each image's path, size and modification time): adding, removing or
/// changing an image rebuilds it.
enum ImageFolder {
  /// One split's images, in sample order.
  struct Listing {
    var directory: String
    var files: [String]
    var labels: [Int32]
  }

  static func load(_ directory: String, options: DataOptions) throws(DatasetError) -> (Dataset, Dataset, [String]) {
    let trainDirectory = (directory as NSString).appendingPathComponent("train")
    let testDirectory = (directory as NSString).appendingPathComponent("test")
    for path in [directory, trainDirectory, testDirectory] {
      var isDirectory: ObjCBool = false
      guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw DatasetError(
          path: path, problem: "expected a directory, found \(isDirectory.boolValue ? "a file" : "nothing")",
          hint: "An image folder dataset is DIR/train/<class>/*.png and DIR/test/<class>/*.png")
      }
    }
    let classes = try subdirectories(of: trainDirectory)
    guard !classes.isEmpty else {
      throw DatasetError(
        path: trainDirectory, problem: "has no class folders",
        hint: "Put each class's images in a folder of its own: train/<class>/*.png")
    }
    let train = try list(trainDirectory, classes: classes)
    let test = try list(testDirectory, classes: classes)
    let cache = DatasetCache.resolve(options.cacheDirectory)
    let version = checksum(train) + "-" + checksum(test)
    let trainSamples = try decoded(train, other: test, version: version, cache: cache)
    let testSamples: Decoded
    do {
      testSamples = try decoded(test, other: train, version: version, cache: cache)
    } catch {
      // A bad test image leaves nothing behind: not even the training split's entry this call built.
      if trainSamples.built { unlink(trainSamples.entry) }
      throw error
    }
    func dataset(_ listing: Listing, _ samples: Decoded) -> Dataset {
      Dataset(
        count: listing.files.count, featureCount: samples.shape.reduce(1, *), classCount: classes.count,
        samples: samples.bytes, labels: listing.labels, sampleShape: samples.shape)
    }
    return (dataset(train, trainSamples), dataset(test, testSamples), classes)
  }

  /// Visible subfolders, sorted by name.
  private static func subdirectories(of path: String) throws(DatasetError) -> [String] {
    try entries(of: path).filter { name in
      var isDirectory: ObjCBool = false
      return FileManager.default.fileExists(atPath: path + "/" + name, isDirectory: &isDirectory)
        && isDirectory.boolValue
    }
  }

  private static func entries(of path: String) throws(DatasetError) -> [String] {
    do {
      return try FileManager.default.contentsOfDirectory(atPath: path).filter { !$0.hasPrefix(".") }.sorted()
    } catch {
      throw DatasetError(
        path: path, problem: "cannot list the directory (\((error as NSError).localizedDescription))",
        hint: "Check the directory's permissions")
    }
  }

  private static func list(_ directory: String, classes: [String]) throws(DatasetError) -> Listing {
    var listing = Listing(directory: directory, files: [], labels: [])
    for folder in try subdirectories(of: directory) {
      guard let label = classes.firstIndex(of: folder) else {
        throw DatasetError(
          path: directory + "/" + folder,
          problem: "is a class the training images do not have (their classes: \(classes.joined(separator: ", ")))",
          hint: "Give the test images the training set's class folders")
      }
      let names = try entries(of: directory + "/" + folder)
      if let other = names.first(where: { !$0.lowercased().hasSuffix(".png") }) {
        throw DatasetError(
          path: directory + "/" + folder + "/" + other, problem: "is not a .png file",
          hint: "Image folders hold PNG images only; convert others first (e.g. ImageMagick's mogrify -format png)")
      }
      guard !names.isEmpty else {
        throw DatasetError(
          path: directory + "/" + folder, problem: "is an empty class folder (expected .png images)",
          hint: "Remove the folder or put the class's images in it")
      }
      for name in names {
        listing.files.append(folder + "/" + name)
        listing.labels.append(Int32(label))
      }
    }
    guard !listing.files.isEmpty else {
      throw DatasetError(
        path: directory, problem: "has no images (expected <class>/*.png)",
        hint: "An image folder dataset is DIR/train/<class>/*.png and DIR/test/<class>/*.png")
    }
    return listing
  }

  /// FNV-1a 64 over each file's relative path, size and modification time: changes when any image does.
  private static func checksum(_ listing: Listing) -> String {
    var text = ""
    for file in listing.files {
      var info = stat()
      stat(listing.directory + "/" + file, &info)
      text += "\(file) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)\n"
    }
    return DatasetCache.hex(text)
  }

  /// A split's samples, their shape [c, h, w], its cache entry, and whether this call built the entry.
  private struct Decoded {
    var bytes: SampleBytes
    var shape: [Int]
    var entry: String
    var built: Bool
  }

  /// The split's samples from its cache entry, decoded first when the host has none.
  private static func decoded(_ listing: Listing, other: Listing, version: String, cache: DatasetCache)
    throws(DatasetError) -> Decoded
  {
    var built = false
    let source = DatasetCache.absolutePath(listing.directory)
    let name =
      ((listing.directory as NSString).deletingLastPathComponent as NSString).lastPathComponent + "-"
      + (listing.directory as NSString).lastPathComponent
    let entry = try cache.entry(source: source, version: version, name: name) { writer throws(DatasetError) in
      built = true
      let shape = try sampleShape(of: [listing, other])
      try writer.write(NumPyHeader.encode(descr: "|u1", shape: [listing.files.count] + shape))
      let (channels, height, width) = (shape[0], shape[1], shape[2])
      var interleaved = [UInt8](repeating: 0, count: channels * height * width)
      var planar = [UInt8](repeating: 0, count: channels * height * width)
      for file in listing.files {
        try decode(listing.directory + "/" + file, channels: channels, into: &interleaved)
        // [h, w, c] as decoded → [c, h, w].
        for p in 0..<(height * width) {
          for c in 0..<channels { planar[c * height * width + p] = interleaved[p * channels + c] }
        }
        try writer.write(planar)
      }
    }
    let array = try StoredArray.open(npy: entry)
    let shape = array.header.shape
    guard shape.count == 4, shape[0] == listing.files.count, case .mapped(let file, let offset) = array.location else {
      throw DatasetError(
        path: entry, problem: "the cache entry does not hold the images of \(listing.directory)",
        hint: "Remove the file; the next run builds it again")
    }
    return Decoded(
      bytes: SampleBytes(mapping: file, offset: offset, count: array.header.dataByteCount),
      shape: Array(shape.dropFirst()), entry: entry, built: built)
  }

  /// [c, h, w] of every image: the first training image's size, and 3 channels if any image has colour, else 1.
  private static func sampleShape(of listings: [Listing]) throws(DatasetError) -> [Int] {
    var first: (path: String, width: Int, height: Int)?
    var colour = false
    for listing in listings {
      for file in listing.files {
        let path = listing.directory + "/" + file
        let image = try begin(path)
        defer { end(image) }
        colour = colour || image.pointee.format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0
        let (width, height) = (Int(image.pointee.width), Int(image.pointee.height))
        guard let first else {
          first = (path, width, height)
          continue
        }
        guard width == first.width && height == first.height else {
          throw DatasetError(
            path: path,
            problem: "is \(width)x\(height) pixels; expected \(first.width)x\(first.height), the size of \(first.path)",
            hint: "Resize the images to one size first (e.g. ImageMagick's mogrify -resize WxH!)")
        }
      }
    }
    return [colour ? 3 : 1, first!.height, first!.width]
  }

  /// Reads a PNG's header. The `png_image` lives on the heap until `end`: libpng's error handler keeps its
  /// address, so it must not move (a copy of the struct would leave the handler a dangling pointer, and an error in
  /// the pixels an abort).
  private static func begin(_ path: String) throws(DatasetError) -> UnsafeMutablePointer<png_image> {
    let image = UnsafeMutablePointer<png_image>.allocate(capacity: 1)
    image.initialize(to: png_image())
    image.pointee.version = UInt32(PNG_IMAGE_VERSION)
    guard png_image_begin_read_from_file(image, path) != 0 else {
      let message = libpngMessage(image)
      end(image)
      throw DatasetError(
        path: path, problem: "is not a PNG image libpng can read (libpng: \(message))",
        hint: "Check the file, or remove it from the folder")
    }
    return image
  }

  private static func end(_ image: UnsafeMutablePointer<png_image>) {
    png_image_free(image)
    image.deallocate()
  }

  /// One image as 8-bit gray or RGB, interleaved ([h, w, c]), into `pixels`.
  private static func decode(_ path: String, channels: Int, into pixels: inout [UInt8]) throws(DatasetError) {
    let image = try begin(path)
    defer { end(image) }
    // PNG_FORMAT_RGB is PNG_FORMAT_FLAG_COLOR, PNG_FORMAT_GRAY is 0 (macros Swift does not import).
    image.pointee.format = channels == 3 ? UInt32(PNG_FORMAT_FLAG_COLOR) : 0
    // Alpha is composited onto what the buffer holds: black.
    for i in pixels.indices { pixels[i] = 0 }
    let done = pixels.withUnsafeMutableBytes { png_image_finish_read(image, nil, $0.baseAddress, 0, nil) }
    guard done != 0 else {
      let message = libpngMessage(image)
      throw DatasetError(
        path: path, problem: "cannot be decoded (libpng: \(message))",
        hint: "Check the file, or remove it from the folder")
    }
  }

  private static func libpngMessage(_ image: UnsafeMutablePointer<png_image>) -> String {
    withUnsafeBytes(of: &image.pointee.message) { raw in
      String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
  }
}
