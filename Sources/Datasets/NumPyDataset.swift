import Foundation

/// `--dataset npz` and `--dataset npy`: images and labels as NumPy arrays.
///
/// - npz: one archive with `x_train`, `y_train`, `x_test`, `y_test` (Keras's `mnist.npz` layout), written by
///   `numpy.savez` (stored: its arrays are mapped where they lie) or `numpy.savez_compressed` (deflated: inflated
///   once per host into the cache).
/// - npy: a directory with `train-images.npy`, `train-labels.npy`, `test-images.npy`, `test-labels.npy`.
///
/// Images are uint8 (scaled by 1/255) or float32 (used as they are), shaped [N, H, W] (one channel),
/// [N, H, W, C] or [N, C, H, W], or [N, F] (flat features). A 4-axis array is channels-last when its last axis has
/// 1, 3 or 4 entries and its second does not, channels-first in the opposite case; otherwise `--layout` must say.
/// Labels are any integer type, [N] or [N, 1]; the class count is the largest label + 1, or `--classes`.
enum NumPyDataset {
  static let npzMembers = (trainImages: "x_train", trainLabels: "y_train", testImages: "x_test", testLabels: "y_test")
  static let npyFiles = (
    trainImages: "train-images.npy", trainLabels: "train-labels.npy", testImages: "test-images.npy",
    testLabels: "test-labels.npy"
  )

  static func loadArchive(_ path: String, options: DataOptions) throws(DatasetError) -> (Dataset, Dataset) {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw DatasetError(
        path: path, problem: "the .npz file does not exist",
        hint: "Pass --data-dir with the .npz file (numpy.savez(FILE, x_train=..., y_train=..., x_test=..., y_test=...))"
      )
    }
    guard !isDirectory.boolValue else {
      throw DatasetError(
        path: path, problem: "expected an .npz file, found a directory",
        hint: "Pass the .npz file itself, or --dataset npy for a directory of .npy files")
    }
    let archive = try ZipArchive(path: path)
    func array(_ name: String) throws(DatasetError) -> StoredArray {
      guard let member = archive.member(named: name + ".npy") else {
        let found = archive.members.map { ($0.name as NSString).deletingPathExtension }
        throw DatasetError(
          path: path,
          problem:
            "the archive has no array '\(name)' (it has \(found.isEmpty ? "none" : found.joined(separator: ", "))); "
            + "expected x_train, y_train, x_test and y_test",
          hint: "Save it as numpy.savez(FILE, x_train=..., y_train=..., x_test=..., y_test=...)")
      }
      return try StoredArray.open(member, of: archive)
    }
    let names = npzMembers
    return try build(
      train: (try array(names.trainImages), try array(names.trainLabels)),
      test: (try array(names.testImages), try array(names.testLabels)), options: options)
  }

  static func loadDirectory(_ directory: String, options: DataOptions) throws(DatasetError) -> (Dataset, Dataset) {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
      throw DatasetError(
        path: directory,
        problem: "expected a directory of .npy files, found \(isDirectory.boolValue ? "a file" : "nothing")",
        hint: "Pass --data-dir with the directory that holds train-images.npy, train-labels.npy, test-images.npy "
          + "and test-labels.npy")
    }
    func array(_ name: String) throws(DatasetError) -> StoredArray {
      let path = (directory as NSString).appendingPathComponent(name)
      guard FileManager.default.fileExists(atPath: path) else {
        throw DatasetError(
          path: directory, problem: "missing \(name)",
          hint: "The directory needs train-images.npy, train-labels.npy, test-images.npy and test-labels.npy "
            + "(numpy.save each)")
      }
      return try StoredArray.open(npy: path)
    }
    let names = npyFiles
    return try build(
      train: (try array(names.trainImages), try array(names.trainLabels)),
      test: (try array(names.testImages), try array(names.testLabels)), options: options)
  }

  /// Both splits from their arrays, checked against each other.
  private static func build(
    train: (images: StoredArray, labels: StoredArray), test: (images: StoredArray, labels: StoredArray),
    options: DataOptions
  ) throws(DatasetError) -> (Dataset, Dataset) {
    let trainShape = try sampleShape(train.images, layout: options.layout)
    let testShape = try sampleShape(test.images, layout: options.layout)
    guard trainShape.shape == testShape.shape else {
      throw DatasetError(
        path: test.images.name,
        problem:
          "the test samples are \(describe(testShape)) but the training samples (\(train.images.name)) are "
          + "\(describe(trainShape)); expected the same",
        hint: "Save train and test images of the same size and layout")
    }
    let trainLabels = try checkedLabels(train.labels, count: train.images.header.shape[0], images: train.images)
    let testLabels = try checkedLabels(test.labels, count: test.images.header.shape[0], images: test.images)
    let classCount = try LabelRange.classCount(
      [(trainLabels, train.labels.name), (testLabels, test.labels.name)], declared: options.classCount)
    let cache = DatasetCache.resolve(options.cacheDirectory)
    func dataset(_ images: StoredArray, _ labels: [Int64]) throws(DatasetError) -> Dataset {
      let (samples, format) = try images.samples(copies: options.copies, cache: cache)
      return Dataset(
        count: labels.count, featureCount: trainShape.shape.reduce(1, *), classCount: classCount, samples: samples,
        pixelFormat: format, layout: trainShape.layout, labels: labels.map { Int32($0) },
        sampleShape: trainShape.shape)
    }
    return (try dataset(train.images, trainLabels), try dataset(test.images, testLabels))
  }

  private static func describe(_ shape: (shape: [Int], layout: ImageLayout)) -> String {
    shape.shape.map(String.init).joined(separator: "x")
  }

  /// A sample's shape ([c, h, w], or [features]) and how a stored sample is ordered.
  static func sampleShape(_ images: StoredArray, layout: ImageLayout?) throws(DatasetError) -> (
    shape: [Int], layout: ImageLayout
  ) {
    _ = try images.pixelFormat()
    let shape = images.header.shape
    guard shape.count >= 2, shape.count <= 4, shape.allSatisfy({ $0 > 0 }), shape[0] <= Int(Int32.max) else {
      throw DatasetError(
        path: images.name,
        problem: "the images have shape \(shape); expected [N, H, W], [N, H, W, C], [N, C, H, W] or [N, F], "
          + "every size positive",
        hint: "Reshape them before saving, e.g. x.reshape(len(x), 28, 28)")
    }
    switch shape.count {
    case 2: return ([shape[1]], .nchw)
    case 3: return ([1, shape[1], shape[2]], .nchw)
    default:
      let channelSizes = [1, 3, 4]
      let (second, last) = (channelSizes.contains(shape[1]), channelSizes.contains(shape[3]))
      guard let chosen = layout ?? (last && !second ? .nhwc : second && !last ? .nchw : nil) else {
        throw DatasetError(
          path: images.name,
          problem: "the images have shape \(shape), and which axis holds the channels cannot be told from it",
          hint: "Pass --layout nhwc ([N, H, W, C]) or --layout nchw ([N, C, H, W])")
      }
      // One channel is the same order either way; keep such samples in the faster [c, h, w] path.
      if chosen == .nhwc { return ([shape[3], shape[1], shape[2]], shape[3] == 1 ? .nchw : .nhwc) }
      return ([shape[1], shape[2], shape[3]], .nchw)
    }
  }

  private static func checkedLabels(_ labels: StoredArray, count: Int, images: StoredArray) throws(DatasetError)
    -> [Int64]
  {
    let values = try labels.labels()
    guard values.count == count else {
      throw DatasetError(
        path: labels.name,
        problem: "count mismatch: expected \(count) labels (one per image in \(images.name)), found \(values.count)",
        hint: "Save the images and labels of the same split together")
    }
    return values
  }
}

/// The class count of labels read from files, every label checked against it.
enum LabelRange {
  /// `declared` (`--classes`) or the largest label + 1. A negative label, or one at or above `declared`, is an
  /// input error naming its file and position.
  static func classCount(_ splits: [(labels: [Int64], name: String)], declared: Int?) throws(DatasetError) -> Int {
    let limit = Int64(declared ?? Int(Int32.max))
    for (labels, name) in splits {
      if let index = labels.firstIndex(where: { $0 < 0 || $0 >= limit }) {
        throw DatasetError(
          path: name,
          problem: "label at index \(index) is \(labels[index]); expected a class number in 0..<\(limit)"
            + (declared != nil ? " (--classes \(limit))" : ""),
          hint: declared != nil
            ? "Raise --classes, or check the labels" : "Labels are class numbers 0, 1, 2, ...: check the array")
      }
    }
    if let declared { return declared }
    return Int(splits.map { $0.labels.max() ?? 0 }.max() ?? 0) + 1
  }
}
