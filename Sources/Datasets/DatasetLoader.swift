import Foundation

/// Loads the train and test splits `--dataset` and `--data-dir` name.
public enum DatasetLoader {
  /// Where the Debian package dataset-fashion-mnist installs the four gzipped IDX files.
  public static let defaultFashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"
  /// MNIST and Fashion-MNIST both have ten classes.
  static let mnistClassCount = 10

  /// The four files of a directory, in the MNIST naming; each may also end in `.gz`.
  static let trainImagesName = "train-images-idx3-ubyte"
  static let trainLabelsName = "train-labels-idx1-ubyte"
  static let testImagesName = "t10k-images-idx3-ubyte"
  static let testLabelsName = "t10k-labels-idx1-ubyte"

  /// fashion-mnist: `directory ?? defaultFashionMNISTDirectory`; mnist: `directory` is required (the error names
  /// `--data-dir` otherwise); synthetic: no files, generated from `synthetic`.
  public static func load(_ kind: DatasetKind, directory: String?, synthetic: SyntheticSpec)
    throws(DatasetError)
    -> DatasetPair
  {
    switch kind {
    case .fashionMNIST:
      let directory = directory ?? defaultFashionMNISTDirectory
      let (train, test) = try loadIDXDirectory(directory, kind: kind)
      return DatasetPair(kind: kind, source: directory, train: train, test: test)
    case .mnist:
      guard let directory else {
        throw DatasetError(
          path: "--data-dir",
          problem: "the mnist dataset has no default directory (expected --data-dir, found none)",
          hint:
            "Pass --data-dir DIR, where DIR holds \(trainImagesName), \(trainLabelsName), \(testImagesName) "
            + "and \(testLabelsName) (each optionally .gz)")
      }
      let (train, test) = try loadIDXDirectory(directory, kind: kind)
      return DatasetPair(kind: kind, source: directory, train: train, test: test)
    case .synthetic:
      let (train, test) = try SyntheticData.generate(synthetic)
      return DatasetPair(
        kind: kind, source: "synthetic(seed \(synthetic.seed))", train: train, test: test)
    }
  }

  /// Reads both splits from `directory` and checks that they agree with each other.
  static func loadIDXDirectory(_ directory: String, kind: DatasetKind) throws(DatasetError) -> (
    Dataset, Dataset
  ) {
    let installHint =
      kind == .fashionMNIST
      ? "Install it (apt-get install dataset-fashion-mnist) or pass --data-dir with the four IDX files"
      : "Pass --data-dir with the directory that holds the four IDX files"
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
      throw DatasetError(
        path: directory, problem: "the \(kind.rawValue) data directory does not exist",
        hint: installHint)
    }
    guard isDirectory.boolValue else {
      throw DatasetError(
        path: directory, problem: "expected a directory of IDX files, found a file",
        hint: "Pass --data-dir with the directory that holds the files, not a file")
    }
    let train = try loadSplit(
      directory: directory, images: trainImagesName, labels: trainLabelsName, hint: installHint)
    let test = try loadSplit(
      directory: directory, images: testImagesName, labels: testLabelsName, hint: installHint)
    guard train.rows == test.rows, train.columns == test.columns else {
      throw DatasetError(
        path: test.imagesPath,
        problem:
          "test images are \(test.rows)x\(test.columns) but the train images (\(train.imagesPath)) are "
          + "\(train.rows)x\(train.columns); expected the same size",
        hint: "Use train and test files from the same dataset")
    }
    return (train.dataset, test.dataset)
  }

  private static func loadSplit(directory: String, images: String, labels: String, hint: String)
    throws(DatasetError)
    -> (dataset: Dataset, imagesPath: String, rows: Int, columns: Int)
  {
    let imagesPath = try locate(images, in: directory, hint: hint)
    let labelsPath = try locate(labels, in: directory, hint: hint)
    let image = try IDX.readImages(path: imagesPath)
    let labelBytes = try IDX.readLabels(path: labelsPath, classCount: mnistClassCount)
    guard labelBytes.count == image.count else {
      throw DatasetError(
        path: labelsPath,
        problem: "count mismatch: expected \(image.count) labels (one per image in \(imagesPath)), "
          + "found \(labelBytes.count)",
        hint: "Use the images and labels files of the same split, from the same download")
    }
    let dataset = Dataset(
      count: image.count, featureCount: image.rows * image.columns, classCount: mnistClassCount,
      pixels: image.pixels, labels: labelBytes, sampleShape: [1, image.rows, image.columns])
    return (dataset, imagesPath, image.rows, image.columns)
  }

  /// `directory/name` if it exists, else `directory/name.gz`: the plain file wins when both are there.
  private static func locate(_ name: String, in directory: String, hint: String)
    throws(DatasetError) -> String
  {
    let base = directory.hasSuffix("/") ? directory + name : directory + "/" + name
    for candidate in [base, base + ".gz"] where FileManager.default.fileExists(atPath: candidate) {
      return candidate
    }
    throw DatasetError(
      path: directory, problem: "missing \(name) (tried \(name) and \(name).gz)", hint: hint)
  }
}
