import Tensors

/// One split of a classification dataset: the samples as stored (bytes or floats, in this process's memory or a
/// mapping the host's ranks share), and the labels as class numbers.
///
/// `samples` holds `[count, featureCount]` values of `pixelFormat`, row-major (row i is sample i, in `sampleShape`
/// order, or in `[h, w, c]` order when `layout` is `.nhwc`); `labels` is `[count]` with every value in
/// `0..<classCount`. Bytes stay bytes, so the 60k Fashion-MNIST images take 47 MB rather than 188 MB;
/// `BatchAssembler` scales and orders the rows of a batch when they are used.
public struct Dataset: Sendable {
  public let count: Int
  /// 784 for 28x28 images.
  public let featureCount: Int
  /// One sample's shape, [channels, height, width] for images (Fashion-MNIST: [1, 28, 28]), [featureCount] for
  /// data without one; its product is featureCount.
  public let sampleShape: [Int]
  public let classCount: Int
  public let pixelFormat: PixelFormat
  /// How a stored row is ordered; `.nhwc` only for images of more than one channel.
  public let layout: ImageLayout
  public let samples: SampleBytes
  public let labels: [Int32]

  /// Sizes and label range are preconditions: the loaders have already checked them and said so in a `DatasetError`.
  public init(
    count: Int, featureCount: Int, classCount: Int, samples: SampleBytes, pixelFormat: PixelFormat = .uint8,
    layout: ImageLayout = .nchw, labels: [Int32], sampleShape: [Int]? = nil
  ) {
    precondition(count >= 0 && featureCount > 0, "count must be >= 0 and featureCount > 0")
    precondition(
      sampleShape.map { $0.reduce(1, *) == featureCount && $0.allSatisfy { $0 > 0 } } ?? true,
      "sampleShape must be positive with featureCount elements")
    precondition(layout == .nchw || sampleShape?.count == 3, "channels-last samples must be images")
    precondition(classCount > 0, "classCount must be positive")
    precondition(
      samples.count == count * featureCount * pixelFormat.byteCount, "samples must hold count * featureCount values")
    precondition(labels.count == count, "labels.count must be count")
    precondition(labels.allSatisfy { $0 >= 0 && Int($0) < classCount }, "every label must be in 0..<classCount")
    self.count = count
    self.featureCount = featureCount
    self.sampleShape = sampleShape ?? [featureCount]
    self.classCount = classCount
    self.pixelFormat = pixelFormat
    self.layout = layout
    self.samples = samples
    self.labels = labels
  }

  /// Bytes in this process's memory, as the IDX files and the synthetic data hold them.
  public init(
    count: Int, featureCount: Int, classCount: Int, pixels: [UInt8], labels: [Int32], sampleShape: [Int]? = nil
  ) {
    self.init(
      count: count, featureCount: featureCount, classCount: classCount, samples: SampleBytes(pixels), labels: labels,
      sampleShape: sampleShape)
  }

  /// Sample `index`'s values in `sampleShape` order ([c, h, w]), scaled to [0, 1] when stored as bytes; for pictures
  /// and single predictions, not the training loop.
  public func sample(_ index: Int) -> [Float] {
    precondition(index >= 0 && index < count, "sample index out of range")
    var values = [Float](repeating: 0, count: featureCount)
    values.withUnsafeMutableBufferPointer { BatchAssembler.copySample(index, of: self, into: $0.baseAddress!) }
    return values
  }

  /// FNV-1a 64 over count, featureCount, classCount (each as 8 little-endian bytes), then the stored samples, then
  /// the labels: one byte each when there are at most 256 classes, else 4 little-endian bytes (not the sample
  /// shape, which the IDX header fixes: fingerprints stay what they were before it was kept, and before labels were
  /// widened).
  ///
  /// Lets ranks check cheaply (one all-reduce of a number) that they loaded the same data.
  public var fingerprint: UInt64 {
    var hash = FNV1a64()
    for value in [count, featureCount, classCount] {
      withUnsafeBytes(of: UInt64(value).littleEndian) { hash.combine($0) }
    }
    hash.combine(samples.buffer)
    if classCount <= 256 {
      labels.map { UInt8($0) }.withUnsafeBytes { hash.combine($0) }
    } else {
      labels.map { $0.littleEndian }.withUnsafeBytes { hash.combine($0) }
    }
    return hash.value
  }
}

/// The datasets `--dataset` can name.
public enum DatasetKind: String, CaseIterable, Codable, Sendable {
  case fashionMNIST = "fashion-mnist"
  case mnist
  case synthetic
  /// One `.npz` with `x_train`, `y_train`, `x_test`, `y_test` (`NumPyDataset`).
  case npz
  /// A directory of `train-images.npy`, `train-labels.npy`, `test-images.npy`, `test-labels.npy`.
  case npy
  /// PNG images in class folders, `train/<class>/*.png` and `test/<class>/*.png` (`ImageFolder`).
  case folder
}

/// How the data files are read, beyond which they are: the options `--layout`, `--classes`, `--class-names`,
/// `--cache-dir` and `--data-copies`.
public struct DataOptions: Sendable, Equatable {
  /// Which axis of a 4-axis image array holds the channels; nil: told from the shape.
  public var layout: ImageLayout?
  /// The number of classes; nil: the largest label + 1 (NumPy data) or 10 (MNIST's).
  public var classCount: Int?
  /// A text file of class names, one per line in label order.
  public var classNamesFile: String?
  /// Where decoded samples are kept; nil: `DatasetCache.resolve`'s default.
  public var cacheDirectory: String?
  public var copies: DataCopies

  public init(
    layout: ImageLayout? = nil, classCount: Int? = nil, classNamesFile: String? = nil, cacheDirectory: String? = nil,
    copies: DataCopies = .host
  ) {
    self.layout = layout
    self.classCount = classCount
    self.classNamesFile = classNamesFile
    self.cacheDirectory = cacheDirectory
    self.copies = copies
  }
}

/// The size and seed of the synthetic dataset. Its `seed` is the data's own, not the run's: changing `--seed`
/// changes the initial weights and the order, never the data.
public struct SyntheticSpec: Codable, Equatable, Sendable {
  public var trainCount = 8192
  public var testCount = 2048
  public var featureCount = 784
  public var classCount = 10
  public var seed: UInt64 = 2017

  public init(
    trainCount: Int = 8192, testCount: Int = 2048, featureCount: Int = 784, classCount: Int = 10,
    seed: UInt64 = 2017
  ) {
    self.trainCount = trainCount
    self.testCount = testCount
    self.featureCount = featureCount
    self.classCount = classCount
    self.seed = seed
  }

  private enum CodingKeys: String, CodingKey {
    case trainCount, testCount, featureCount, classCount, seed
  }

  /// Missing keys keep their defaults, so a config file may give only the fields it changes.
  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    let defaults = SyntheticSpec()
    trainCount = try container.decodeIfPresent(Int.self, forKey: .trainCount) ?? defaults.trainCount
    testCount = try container.decodeIfPresent(Int.self, forKey: .testCount) ?? defaults.testCount
    featureCount =
      try container.decodeIfPresent(Int.self, forKey: .featureCount) ?? defaults.featureCount
    classCount = try container.decodeIfPresent(Int.self, forKey: .classCount) ?? defaults.classCount
    seed = try container.decodeIfPresent(UInt64.self, forKey: .seed) ?? defaults.seed
  }
}

/// The train and test splits of one dataset, and where they came from.
public struct DatasetPair: Sendable {
  public let kind: DatasetKind
  /// The directory the files were read from, or `"synthetic(seed N)"`.
  public let source: String
  public let train: Dataset
  public let test: Dataset
  /// The classes' names in label order, from `--class-names`; nil when the data names none.
  public let classNames: [String]?

  public init(kind: DatasetKind, source: String, train: Dataset, test: Dataset, classNames: [String]? = nil) {
    precondition(
      train.featureCount == test.featureCount && train.sampleShape == test.sampleShape,
      "train and test must have the same sample shape")
    precondition(
      train.classCount == test.classCount, "train and test must have the same classCount")
    self.kind = kind
    self.source = source
    self.train = train
    self.test = test
    self.classNames = classNames
  }
}
