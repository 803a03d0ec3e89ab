import Foundation
import Testing

@testable import Datasets

@Suite("Loading a directory")
struct DatasetLoaderTests {
  let directory = TemporaryDirectory()

  @Test("a directory of mixed plain and gzip files loads both splits")
  func loadsDirectory() throws {
    SmallDataset.write(
      into: directory, gzipped: ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
    let pair = try DatasetLoader.load(.mnist, directory: directory.path, synthetic: SyntheticSpec())
    #expect(pair.kind == .mnist)
    #expect(pair.source == directory.path)
    #expect(pair.train.count == 6 && pair.test.count == 4)
    #expect(pair.train.featureCount == 6 && pair.train.classCount == 10)
    #expect(pair.train.pixels == SmallDataset.trainPixels)
    #expect(pair.train.labels == SmallDataset.trainLabels.map(Int32.init))
    #expect(pair.test.pixels == SmallDataset.testPixels)
    #expect(pair.test.labels == SmallDataset.testLabels.map(Int32.init))
  }

  @Test("the plain file wins when both it and a .gz exist")
  func prefersPlain() throws {
    SmallDataset.write(into: directory)
    // A .gz twin that is unreadable: reading it would throw.
    writeFile([1, 2, 3], to: directory.file("train-labels-idx1-ubyte.gz"))
    let pair = try DatasetLoader.load(
      .fashionMNIST, directory: directory.path, synthetic: SyntheticSpec())
    #expect(pair.train.labels == SmallDataset.trainLabels.map(Int32.init))
  }

  @Test("a missing directory")
  func missingDirectory() {
    let path = directory.file("absent")
    let error = #expect(throws: DatasetError.self) {
      try DatasetLoader.load(.fashionMNIST, directory: path, synthetic: SyntheticSpec())
    }
    #expect(error?.path == path)
    #expect(error?.problem.contains("does not exist") == true)
    #expect(error?.hint.contains("dataset-fashion-mnist") == true)
  }

  @Test("a file given as the directory")
  func fileAsDirectory() {
    let path = directory.file("a-file")
    writeFile([1], to: path)
    let error = #expect(throws: DatasetError.self) {
      try DatasetLoader.load(.mnist, directory: path, synthetic: SyntheticSpec())
    }
    #expect(error?.path == path)
    #expect(error?.problem.contains("expected a directory") == true)
    #expect(error?.problem.contains("found a file") == true)
  }

  @Test("a missing file says which names were tried")
  func missingFile() throws {
    SmallDataset.write(into: directory)
    try FileManager.default.removeItem(atPath: directory.file("t10k-labels-idx1-ubyte"))
    let error = #expect(throws: DatasetError.self) {
      try DatasetLoader.load(.mnist, directory: directory.path, synthetic: SyntheticSpec())
    }
    #expect(error?.path == directory.path)
    #expect(
      error?.problem.contains("tried t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz") == true)
  }

  @Test("mnist without --data-dir names the option")
  func mnistNeedsDirectory() {
    let error = #expect(throws: DatasetError.self) {
      try DatasetLoader.load(.mnist, directory: nil, synthetic: SyntheticSpec())
    }
    #expect(error?.path == "--data-dir")
    #expect(error?.hint.contains("--data-dir") == true)
  }

  @Test("images and labels of one split must have the same count")
  func countMismatch() {
    SmallDataset.write(into: directory)
    writeFile(IDXBytes.labels([1, 2, 3, 4, 5]), to: directory.file("train-labels-idx1-ubyte"))
    let error = #expect(throws: DatasetError.self) {
      try DatasetLoader.load(.mnist, directory: directory.path, synthetic: SyntheticSpec())
    }
    #expect(error?.path == directory.file("train-labels-idx1-ubyte"))
    #expect(error?.problem.contains("expected 6 labels") == true)
    #expect(error?.problem.contains("found 5") == true)
  }

  @Test("train and test images must have the same size")
  func dimensionMismatch() {
    SmallDataset.write(into: directory)
    writeFile(
      IDXBytes.images(count: 4, rows: 2, columns: 3, pixels: IDXBytes.pixels(24)),
      to: directory.file("t10k-images-idx3-ubyte"))
    let error = #expect(throws: DatasetError.self) {
      try DatasetLoader.load(.mnist, directory: directory.path, synthetic: SyntheticSpec())
    }
    #expect(error?.path == directory.file("t10k-images-idx3-ubyte"))
    #expect(error?.problem.contains("test images are 2x3") == true)
    #expect(error?.problem.contains("are 3x2") == true)
  }

  @Test("a bad file inside the directory is named by its own path")
  func badFileInDirectory() {
    SmallDataset.write(into: directory)
    writeFile(IDXBytes.labels([0, 1, 2, 3]), to: directory.file("t10k-images-idx3-ubyte"))
    let error = #expect(throws: DatasetError.self) {
      try DatasetLoader.load(.mnist, directory: directory.path, synthetic: SyntheticSpec())
    }
    #expect(error?.path == directory.file("t10k-images-idx3-ubyte"))
    #expect(error?.problem.contains("this looks like a labels file") == true)
  }

  @Test("fingerprint is FNV-1a 64 over the counts, the pixels and the labels")
  func fingerprint() {
    // Reference FNV-1a written out here, over the documented byte sequence.
    func fnv(_ bytes: [UInt8]) -> UInt64 {
      bytes.reduce(0xcbf2_9ce4_8422_2325 as UInt64) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }
    #expect(fnv(Array("a".utf8)) == 0xaf63_dc4c_8601_ec8c)  // the published test vector
    func le(_ value: Int) -> [UInt8] { (0..<8).map { UInt8((value >> (8 * $0)) & 0xff) } }
    let dataset = Dataset(
      count: 2, featureCount: 3, classCount: 4, pixels: [1, 2, 3, 250, 0, 9], labels: [3, 0])
    #expect(dataset.fingerprint == fnv(le(2) + le(3) + le(4) + [1, 2, 3, 250, 0, 9] + [3, 0]))
    let other = Dataset(
      count: 2, featureCount: 3, classCount: 4, pixels: [1, 2, 3, 250, 0, 9], labels: [3, 1])
    #expect(other.fingerprint != dataset.fingerprint)
  }

  @Test("SyntheticSpec decodes with missing keys defaulted")
  func specDecoding() throws {
    let spec = try JSONDecoder().decode(
      SyntheticSpec.self, from: Data(#"{"trainCount": 100, "seed": 5}"#.utf8))
    #expect(spec == SyntheticSpec(trainCount: 100, seed: 5))
    let full = SyntheticSpec(trainCount: 1, testCount: 2, featureCount: 3, classCount: 4, seed: 6)
    #expect(try JSONDecoder().decode(SyntheticSpec.self, from: JSONEncoder().encode(full)) == full)
  }
}

private let fashionDirectory = DatasetLoader.defaultFashionMNISTDirectory

@Suite("Real Fashion-MNIST")
struct FashionMNISTTests {
  @Test(
    "the installed files load with the published sizes, balance and first samples",
    .enabled(
      if: FileManager.default.fileExists(atPath: fashionDirectory),
      "Fashion-MNIST is not installed at /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)"
    ))
  func realFashionMNIST() throws {
    let clock = ContinuousClock()
    let start = clock.now
    let pair = try DatasetLoader.load(.fashionMNIST, directory: nil, synthetic: SyntheticSpec())
    let elapsed = clock.now - start
    print("Fashion-MNIST (train+test, gzip) loaded in \(elapsed) (debug build)")
    #expect(pair.source == fashionDirectory)
    #expect(pair.train.count == 60000 && pair.test.count == 10000)
    #expect(pair.train.featureCount == 784 && pair.test.featureCount == 784)
    #expect(pair.train.classCount == 10)
    var trainCounts = [Int](repeating: 0, count: 256)
    for label in pair.train.labels { trainCounts[Int(label)] += 1 }
    #expect(trainCounts.prefix(10).allSatisfy { $0 == 6000 })
    #expect(trainCounts.dropFirst(10).allSatisfy { $0 == 0 })
    var testCounts = [Int](repeating: 0, count: 256)
    for label in pair.test.labels { testCounts[Int(label)] += 1 }
    #expect(testCounts.prefix(10).allSatisfy { $0 == 1000 })
    // Checked independently with Python's gzip module on the same files.
    #expect(Array(pair.train.labels.prefix(10)) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    #expect(Array(pair.test.labels.prefix(10)) == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7])
    let firstImage = pair.train.pixels[0..<784]
    #expect(firstImage.reduce(0) { $0 + Int($1) } == 76247)
    #expect(firstImage.max() == 255)
    #expect(pair.train.pixels[99] == 13 && pair.train.pixels[100] == 73)
    #expect(pair.test.pixels[0..<784].reduce(0) { $0 + Int($1) } == 33456)
  }
}
