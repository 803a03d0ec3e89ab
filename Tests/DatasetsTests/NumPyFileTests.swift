import Foundation
import Testing

@testable import Datasets

/// The NumPy files of `Fixtures/make_numpy_arrays.py`, written by the installed NumPy when the tests start.
enum NumPyFixtures {
  static let directory = fixtureDirectory(
    writtenBy: "make_numpy_arrays.py",
    failure: "the NumPy tests need python3 and python3-numpy (launch/setup installs them)")

  static func file(_ name: String) -> String { directory + "/" + name }

  /// Sample n's value at (c, h, w), as the script computes it: (n·31 + c·17 + h·7 + w·3) mod 256, scaled to [0, 1].
  static func expected(sample n: Int, channels: Int, height: Int = 5, width: Int = 6) -> [Float] {
    var values: [Float] = []
    for c in 0..<channels {
      for h in 0..<height {
        for w in 0..<width { values.append(Float((n * 31 + c * 17 + h * 7 + w * 3) % 256) / 255) }
      }
    }
    return values
  }

  /// A directory whose four `.npy` files are the given fixtures (copied).
  static func npyDirectory(
    in scratch: TemporaryDirectory, trainImages: String, trainLabels: String, testImages: String = "u8-nhwc.npy",
    testLabels: String = "labels-u1.npy"
  ) -> String {
    let target = scratch.file("npy")
    try? FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
    for (name, source) in [
      ("train-images.npy", trainImages), ("train-labels.npy", trainLabels), ("test-images.npy", testImages),
      ("test-labels.npy", testLabels),
    ] {
      try? FileManager.default.removeItem(atPath: target + "/" + name)
      try! FileManager.default.copyItem(atPath: file(source), toPath: target + "/" + name)
    }
    return target
  }
}

@Suite("NumPy files written by NumPy")
struct NumPyFileTests {
  let scratch = TemporaryDirectory()
  var cache: DatasetCache { DatasetCache(directory: scratch.file("cache")) }

  /// The samples of one image array, in [c, h, w] order, read as `copies` says.
  func samples(_ name: String, copies: DataCopies, layout: ImageLayout? = nil) throws -> (
    values: [[Float]], shape: [Int], mapped: Bool
  ) {
    let array = try StoredArray.open(npy: NumPyFixtures.file(name))
    let (shape, storedLayout) = try NumPyDataset.sampleShape(array, layout: layout)
    let (bytes, format) = try array.samples(copies: copies, cache: cache)
    let count = array.header.shape[0]
    let dataset = Dataset(
      count: count, featureCount: shape.reduce(1, *), classCount: 1, samples: bytes, pixelFormat: format,
      layout: storedLayout, labels: [Int32](repeating: 0, count: count), sampleShape: shape)
    return ((0..<count).map { dataset.sample($0) }, shape, bytes.isMapped)
  }

  @Test(
    "every way NumPy stores the same images reads as the same samples",
    arguments: [
      ("u8-nhw.npy", 1), ("u8-nhw-v2.npy", 1), ("u8-nhw-v3.npy", 1), ("u8-nhwc.npy", 3), ("u8-nchw.npy", 3),
      ("u8-nchw-fortran.npy", 3), ("f4-nchw.npy", 3), ("f4-nchw-big-endian.npy", 3),
      ("f4-nhwc-big-endian-fortran.npy", 3),
    ])
  func imageEncodings(name: String, channels: Int) throws {
    // rank first: it must leave the cache empty; host then fills it only for arrays it cannot map as stored.
    for copies in [DataCopies.rank, .host] {
      let read = try samples(name, copies: copies)
      #expect(read.shape == [channels, 5, 6], "\(name)")
      for n in 0..<5 {
        #expect(read.values[n] == NumPyFixtures.expected(sample: n, channels: channels), "\(name) sample \(n)")
      }
      // Native byte order in C order maps where it lies; anything else is decoded once, into the cache.
      let inPlace = !name.contains("fortran") && !name.contains("big-endian")
      #expect(read.mapped == (copies == .host), "\(name) \(copies)")
      let cached = (try? FileManager.default.contentsOfDirectory(atPath: cache.directory))?.filter {
        $0.hasSuffix(".npy")
      }
      #expect((cached?.isEmpty ?? true) == (inPlace || copies == .rank), "\(name) \(copies): \(cached ?? [])")
    }
  }

  @Test("flat [N, F] arrays are samples of F features")
  func flatFeatures() throws {
    let read = try samples("u8-flat.npy", copies: .host)
    #expect(read.shape == [30])
    #expect(read.values[3] == NumPyFixtures.expected(sample: 3, channels: 1))
  }

  @Test(
    "labels of every integer type and byte order",
    arguments: [
      "labels-u1.npy", "labels-i1.npy", "labels-u2.npy", "labels-i2-big-endian.npy", "labels-u4.npy",
      "labels-u4-big-endian.npy", "labels-i4.npy", "labels-i8.npy", "labels-i8-big-endian.npy", "labels-u8.npy",
      "labels-n1.npy",
    ])
  func labelTypes(name: String) throws {
    #expect(try StoredArray.open(npy: NumPyFixtures.file(name)).labels() == [0, 3, 1, 4, 2])
  }

  @Test(
    "an .npz loads whether stored, deflated, or with a ZIP64 central directory",
    arguments: [
      "stored.npz", "compressed.npz", "zip64-directory.npz",
    ])
  func archives(name: String) throws {
    for copies in DataCopies.allCases {
      let pair = try DatasetLoader.load(
        .npz, directory: NumPyFixtures.file(name), synthetic: SyntheticSpec(),
        options: DataOptions(cacheDirectory: cache.directory, copies: copies))
      #expect(pair.train.count == 5 && pair.test.count == 2)
      #expect(pair.train.sampleShape == [3, 5, 6] && pair.train.layout == .nhwc)
      #expect(pair.train.classCount == 5, "the largest label + 1")
      #expect(pair.train.labels == [0, 3, 1, 4, 2] && pair.test.labels == [1, 0])
      for n in 0..<5 { #expect(pair.train.sample(n) == NumPyFixtures.expected(sample: n, channels: 3)) }
      #expect(pair.test.sample(1) == NumPyFixtures.expected(sample: 1, channels: 3))
      #expect(pair.train.samples.isMapped == (copies == .host))
    }
  }

  @Test("--layout decides an ambiguous shape, and overrides the guess")
  func layoutOption() throws {
    let error = #expect(throws: DatasetError.self) { try samples("ambiguous.npy", copies: .host) }
    #expect(error?.problem.contains("which axis holds the channels") == true)
    #expect(error?.hint.contains("--layout") == true)
    let first = try samples("ambiguous.npy", copies: .host, layout: .nchw)
    #expect(first.shape == [3, 4, 3])
    #expect(first.values[2] == NumPyFixtures.expected(sample: 2, channels: 3, height: 4, width: 3))
    // The same file read as [N, H, W, C]: H = 3, W = 4, C = 3.
    let last = try samples("ambiguous.npy", copies: .host, layout: .nhwc)
    #expect(last.shape == [3, 3, 4])
  }

  @Test("a class count from --classes, and labels checked against it")
  func declaredClasses() throws {
    let directory = NumPyFixtures.npyDirectory(
      in: scratch, trainImages: "u8-nhwc.npy", trainLabels: "labels-i8.npy", testImages: "u8-nhwc.npy")
    let pair = try DatasetLoader.load(
      .npy, directory: directory, synthetic: SyntheticSpec(),
      options: DataOptions(classCount: 70_000, cacheDirectory: cache.directory))
    #expect(pair.train.classCount == 70_000)
    let error = #expect(throws: DatasetError.self) {
      try DatasetLoader.load(
        .npy, directory: directory, synthetic: SyntheticSpec(),
        options: DataOptions(classCount: 4, cacheDirectory: cache.directory))
    }
    #expect(error?.path.hasSuffix("train-labels.npy") == true)
    #expect(error?.problem == "label at index 3 is 4; expected a class number in 0..<4 (--classes 4)")
  }
}

@Suite("NumPy files it must refuse")
struct NumPyRefusalTests {
  let scratch = TemporaryDirectory()
  var options: DataOptions { DataOptions(cacheDirectory: scratch.file("cache")) }

  func loadDirectory(
    trainImages: String = "u8-nhwc.npy", trainLabels: String = "labels-u1.npy", testImages: String = "u8-nhwc.npy",
    testLabels: String = "labels-u1.npy"
  ) throws -> DatasetPair {
    try DatasetLoader.load(
      .npy,
      directory: NumPyFixtures.npyDirectory(
        in: scratch, trainImages: trainImages, trainLabels: trainLabels, testImages: testImages,
        testLabels: testLabels),
      synthetic: SyntheticSpec(), options: options)
  }

  func refusal(_ body: () throws -> Void) -> DatasetError? {
    let error = #expect(throws: DatasetError.self) { try body() }
    // Nothing is left in the cache by a refusal: no entry, no temporary file.
    let left = (try? FileManager.default.contentsOfDirectory(atPath: scratch.file("cache"))) ?? []
    #expect(left.filter { !$0.hasSuffix(".lock") }.isEmpty, "\(left)")
    return error
  }

  @Test("images of a type it cannot use", arguments: [("f8.npy", "float64"), ("i4-images.npy", "int32")])
  func imageTypes(name: String, type: String) {
    let error = refusal { _ = try loadDirectory(trainImages: name) }
    #expect(error?.path.hasSuffix("train-images.npy") == true)
    #expect(error?.problem == "the images are \(type); expected uint8 (scaled by 1/255) or float32 (used as they are)")
  }

  @Test(
    "labels that are not class numbers",
    arguments: [
      ("labels-f4.npy", "the labels are float32; expected an integer type"),
      ("labels-2d.npy", "the labels have shape [5, 2]; expected [N]"),
    ])
  func labelShapes(name: String, problem: String) {
    let error = refusal { _ = try loadDirectory(trainLabels: name) }
    #expect(error?.problem.hasPrefix(problem) == true, "\(error?.problem ?? "")")
  }

  @Test("images of five axes")
  func fiveAxes() {
    let error = refusal { _ = try loadDirectory(trainImages: "five-axes.npy") }
    #expect(error?.problem.hasPrefix("the images have shape [5, 3, 5, 6, 1]; expected [N, H, W]") == true)
  }

  @Test("a label count that differs from the image count")
  func labelCount() {
    let error = refusal { _ = try loadDirectory(testLabels: "labels-short.npy") }
    #expect(error?.path.hasSuffix("test-labels.npy") == true)
    #expect(error?.problem.hasPrefix("count mismatch: expected 5 labels (one per image in ") == true)
    #expect(error?.problem.hasSuffix("test-images.npy), found 2") == true)
  }

  @Test("train and test samples of different shapes")
  func splitShapes() {
    let error = refusal { _ = try loadDirectory(testImages: "u8-nhw.npy") }
    #expect(error?.path.hasSuffix("test-images.npy") == true)
    #expect(error?.problem.hasPrefix("the test samples are 1x5x6") == true)
  }

  @Test("a truncated array", arguments: [1, 100, 500])
  func truncated(cut: Int) throws {
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: NumPyFixtures.file("u8-nchw.npy"))))
    let path = scratch.file("cut.npy")
    writeFile(Array(bytes.dropLast(cut)), to: path)
    let error = #expect(throws: DatasetError.self) { try StoredArray.open(npy: path) }
    #expect(error?.path == path)
    #expect(
      error?.problem
        == "truncated array: its shape [5, 3, 5, 6] of uint8 needs 450 bytes of data, found \(max(450 - cut, 0))"
        || (cut == 500 && error?.problem.contains("header") == true), "\(error?.problem ?? "")")
  }

  @Test("an .npz without one of its four arrays")
  func missingMember() {
    let error = refusal {
      _ = try DatasetLoader.load(
        .npz, directory: NumPyFixtures.file("no-x-test.npz"), synthetic: SyntheticSpec(), options: options)
    }
    #expect(
      error?.problem
        == "the archive has no array 'x_test' (it has x_train, y_train, y_test); expected x_train, y_train, x_test and y_test"
    )
  }

  @Test("a truncated or damaged .npz")
  func damagedArchive() throws {
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: NumPyFixtures.file("compressed.npz"))))
    let cut = scratch.file("cut.npz")
    writeFile(Array(bytes.dropLast(30)), to: cut)
    let cutError = refusal {
      _ = try DatasetLoader.load(.npz, directory: cut, synthetic: SyntheticSpec(), options: options)
    }
    #expect(cutError?.problem.hasPrefix("not a ZIP archive") == true)
    // Flip one byte inside the first member's deflated data: zlib or the CRC-32 catches it.
    var damaged = bytes
    damaged[200] ^= 0x55
    let path = scratch.file("damaged.npz")
    writeFile(damaged, to: path)
    let error = refusal {
      _ = try DatasetLoader.load(.npz, directory: path, synthetic: SyntheticSpec(), options: options)
    }
    #expect(error?.path.hasSuffix("damaged.npz:x_train.npy") == true, "\(error?.path ?? "")")
  }

  @Test("a negative label")
  func negativeLabel() throws {
    var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: NumPyFixtures.file("labels-i1.npy"))))
    bytes[bytes.count - 2] = 0xFF
    let directory = NumPyFixtures.npyDirectory(in: scratch, trainImages: "u8-nhwc.npy", trainLabels: "labels-u1.npy")
    writeFile(bytes, to: directory + "/train-labels.npy")
    let error = refusal {
      _ = try DatasetLoader.load(.npy, directory: directory, synthetic: SyntheticSpec(), options: options)
    }
    #expect(error?.problem == "label at index 3 is -1; expected a class number in 0..<2147483647")
  }
}
