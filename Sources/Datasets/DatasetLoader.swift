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

  /// fashion-mnist: `directory ?? defaultFashionMNISTDirectory`; mnist, npz and npy: `directory` is required (the
  /// error names `--data-dir` otherwise); synthetic: no files, generated from `synthetic`. `options` says how the
  /// files are read and kept (see `DataOptions`).
  public static func load(
    _ kind: DatasetKind, directory: String?, synthetic: SyntheticSpec, options: DataOptions = DataOptions()
  ) throws(DatasetError) -> DatasetPair {
    let train: Dataset
    let test: Dataset
    let source: String
    var folderClasses: [String]? = nil
    switch kind {
    case .synthetic:
      (train, test) = try SyntheticData.generate(synthetic)
      source = "synthetic(seed \(synthetic.seed))"
    case .fashionMNIST, .mnist, .npz, .npy, .folder:
      guard let path = directory ?? (kind == .fashionMNIST ? defaultFashionMNISTDirectory : nil) else {
        throw DatasetError(
          path: "--data-dir",
          problem: "the \(kind.rawValue) dataset has no default location (expected --data-dir, found none)",
          hint: "Pass --data-dir " + (kind == .npz ? "FILE.npz" : "DIR") + ": \(expectedFiles(kind))")
      }
      source = path
      switch kind {
      case .npz: (train, test) = try NumPyDataset.loadArchive(path, options: options)
      case .npy: (train, test) = try NumPyDataset.loadDirectory(path, options: options)
      case .folder: (train, test, folderClasses) = try ImageFolder.load(path, options: options)
      default: (train, test) = try loadIDXDirectory(path, kind: kind, options: options)
      }
    }
    let names = try options.classNamesFile.map { file throws(DatasetError) in
      try ClassNamesFile.read(file, classCount: train.classCount)
    }
    return DatasetPair(kind: kind, source: source, train: train, test: test, classNames: names ?? folderClasses)
  }

  /// What `--data-dir` must hold for `kind`, for messages.
  static func expectedFiles(_ kind: DatasetKind) -> String {
    switch kind {
    case .npz: return "an archive of x_train, y_train, x_test and y_test (numpy.savez)"
    case .npy: return "a directory of train-images.npy, train-labels.npy, test-images.npy and test-labels.npy"
    case .folder: return "a directory of train/<class>/*.png and test/<class>/*.png"
    default:
      return "a directory of \(trainImagesName), \(trainLabelsName), \(testImagesName) and \(testLabelsName) "
        + "(each optionally .gz)"
    }
  }

  /// Reads both splits from `directory` and checks that they agree with each other.
  static func loadIDXDirectory(_ directory: String, kind: DatasetKind, options: DataOptions) throws(DatasetError)
    -> (Dataset, Dataset)
  {
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
    let cache = DatasetCache.resolve(options.cacheDirectory)
    let train = try loadSplit(
      directory: directory, images: trainImagesName, labels: trainLabelsName, hint: installHint, options: options,
      cache: cache)
    let test = try loadSplit(
      directory: directory, images: testImagesName, labels: testLabelsName, hint: installHint, options: options,
      cache: cache)
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

  private static func loadSplit(
    directory: String, images: String, labels: String, hint: String, options: DataOptions, cache: DatasetCache
  ) throws(DatasetError) -> (dataset: Dataset, imagesPath: String, rows: Int, columns: Int) {
    let imagesPath = try locate(images, in: directory, hint: hint)
    let labelsPath = try locate(labels, in: directory, hint: hint)
    let image = try IDX.images(path: imagesPath, copies: options.copies, cache: cache)
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
      samples: image.samples, labels: labelBytes.map(Int32.init), sampleShape: [1, image.rows, image.columns])
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
