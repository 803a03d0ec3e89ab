import Tensors

/// One split of a classification dataset: pixels kept as bytes, labels as class numbers.
///
/// `pixels` is `[count, featureCount]` row-major (row i is sample i); `labels` is `[count]` with every value in
/// `0..<classCount`. Bytes, not floats, so the 60k Fashion-MNIST images take 47 MB rather than 188 MB;
/// `BatchAssembler` scales the rows of a batch when they are used.
public struct Dataset: Sendable {
  public let count: Int
  /// 784 for 28x28 images.
  public let featureCount: Int
  /// One sample's shape, [channels, height, width] for images (Fashion-MNIST: [1, 28, 28]), [featureCount] for
  /// data without one; its product is featureCount. A row of `pixels` is the sample in this shape, row-major.
  public let sampleShape: [Int]
  public let classCount: Int
  public let pixels: [UInt8]
  public let labels: [UInt8]

  /// Sizes and label range are preconditions: the loaders have already checked them and said so in a `DatasetError`.
  public init(
    count: Int, featureCount: Int, classCount: Int, pixels: [UInt8], labels: [UInt8], sampleShape: [Int]? = nil
  ) {
    precondition(count >= 0 && featureCount > 0, "count must be >= 0 and featureCount > 0")
    precondition(
      sampleShape.map { $0.reduce(1, *) == featureCount && $0.allSatisfy { $0 > 0 } } ?? true,
      "sampleShape must be positive with featureCount elements")
    precondition(classCount > 0 && classCount <= 256, "classCount must be in 1...256")
    precondition(pixels.count == count * featureCount, "pixels.count must be count * featureCount")
    precondition(labels.count == count, "labels.count must be count")
    precondition(labels.allSatisfy { Int($0) < classCount }, "every label must be below classCount")
    self.count = count
    self.featureCount = featureCount
    self.sampleShape = sampleShape ?? [featureCount]
    self.classCount = classCount
    self.pixels = pixels
    self.labels = labels
  }

  /// FNV-1a 64 over count, featureCount, classCount (each as 8 little-endian bytes), then the pixels, then the labels
  /// (not the sample shape, which the IDX header fixes: fingerprints stay what they were before it was kept).
  ///
  /// Lets ranks check cheaply (one all-reduce of a number) that they loaded the same data.
  public var fingerprint: UInt64 {
    var hash = FNV1a64()
    for value in [count, featureCount, classCount] {
      withUnsafeBytes(of: UInt64(value).littleEndian) { hash.combine($0) }
    }
    pixels.withUnsafeBytes { hash.combine($0) }
    labels.withUnsafeBytes { hash.combine($0) }
    return hash.value
  }
}

/// The datasets `--dataset` can name.
public enum DatasetKind: String, CaseIterable, Codable, Sendable {
  case fashionMNIST = "fashion-mnist"
  case mnist
  case synthetic
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

  public init(kind: DatasetKind, source: String, train: Dataset, test: Dataset) {
    precondition(
      train.featureCount == test.featureCount && train.sampleShape == test.sampleShape,
      "train and test must have the same sample shape")
    precondition(
      train.classCount == test.classCount, "train and test must have the same classCount")
    self.kind = kind
    self.source = source
    self.train = train
    self.test = test
  }
}
