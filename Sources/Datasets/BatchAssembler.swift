import CKernels

/// Reused buffers for one batch: gathers rows of a `Dataset`, scales stored bytes to [0, 1] as `Float(p) / 255`
/// (PyTorch's `ToTensor`; stored floats are taken as they are) in [c, h, w] order, then applies `preprocessing` (in training its random crop and flip, always its
/// normalisation), and widens the labels to `Int32`.
///
/// Allocated once per run; `assemble` allocates nothing, so the training loop's steady state allocates nothing.
public final class BatchAssembler {
  public let featureCount: Int
  public let maxBatch: Int
  /// `[maxBatch, featureCount]` row-major; after `assemble`, the first n rows hold the batch.
  public let inputs: UnsafeMutablePointer<Float>
  /// `[maxBatch]`; after `assemble`, the first n entries hold the batch's labels.
  public let labels: UnsafeMutablePointer<Int32>
  public let preprocessing: Preprocessing
  /// [channels, height, width] of a sample ([1, 1, featureCount] for data without an image shape).
  private let channels: Int
  private let height: Int
  private let width: Int
  /// One sample, for the crop and flip to read from while they write the batch row.
  private let sample: UnsafeMutablePointer<Float>

  /// `sampleShape` ([c, h, w], or nil for flat data) places the crop, the flip and each channel's normalisation;
  /// a random crop or flip needs it.
  public init(
    featureCount: Int, maxBatch: Int, sampleShape: [Int]? = nil, preprocessing: Preprocessing = Preprocessing()
  ) {
    precondition(featureCount > 0 && maxBatch > 0, "featureCount and maxBatch must be positive")
    let shape = sampleShape?.count == 3 ? sampleShape! : [1, 1, featureCount]
    precondition(shape.reduce(1, *) == featureCount, "the sample shape must hold featureCount values")
    precondition(!preprocessing.isRandom || sampleShape?.count == 3, "random crops and flips need image samples")
    precondition(
      preprocessing.normalization.map { $0.means.count == shape[0] } ?? true, "one mean and std per channel")
    self.featureCount = featureCount
    self.maxBatch = maxBatch
    self.preprocessing = preprocessing
    (channels, height, width) = (shape[0], shape[1], shape[2])
    inputs = .allocate(capacity: maxBatch * featureCount)
    inputs.initialize(repeating: 0, count: maxBatch * featureCount)
    labels = .allocate(capacity: maxBatch)
    labels.initialize(repeating: 0, count: maxBatch)
    sample = .allocate(capacity: featureCount)
    sample.initialize(repeating: 0, count: featureCount)
  }

  deinit {
    inputs.deallocate()
    labels.deallocate()
    sample.deallocate()
  }

  /// Where the samples of a training batch sit in their epoch's permutation, for the random crop and flip: slot j
  /// holds position `first + stride·j` of epoch `epoch`'s permutation (`DistributedSampler.firstPosition`).
  public struct Positions: Sendable {
    public var seed: UInt64
    public var epoch: Int
    public var first: Int
    public var stride: Int

    public init(seed: UInt64, epoch: Int, first: Int, stride: Int) {
      (self.seed, self.epoch, self.first, self.stride) = (seed, epoch, first, stride)
    }
  }

  /// Rows `indices[i]` of `dataset` into batch row i, in the order given. `indices.count <= maxBatch`. With
  /// `positions` (training) each sample gets its random crop and flip; the normalisation always.
  public func assemble(from dataset: Dataset, indices: UnsafeBufferPointer<Int32>, positions: Positions? = nil) {
    precondition(
      dataset.featureCount == featureCount, "dataset.featureCount must match the assembler's")
    precondition(indices.count <= maxBatch, "at most maxBatch indices")
    dataset.labels.withUnsafeBufferPointer { datasetLabels in
      for (slot, index) in indices.enumerated() {
        let row = Int(index)
        precondition(row >= 0 && row < dataset.count, "index out of the dataset's range")
        let destination = inputs + slot * featureCount
        Self.copySample(row, of: dataset, into: destination)
        if let positions, preprocessing.isRandom {
          transform(
            destination,
            preprocessing.draws(
              seed: positions.seed, epoch: positions.epoch, position: positions.first + positions.stride * slot))
        }
        normalize(destination, samples: 1)
        labels[slot] = datasetLabels[row]
      }
    }
  }

  /// Starts loading rows `indices` of `dataset` into the CPU's caches and returns at once, so that a later
  /// `assemble` of them finds them there (the dataset is far larger than the caches, and its rows are read in a
  /// shuffled order the hardware prefetchers cannot guess).
  public func prefetch(from dataset: Dataset, indices: UnsafeBufferPointer<Int32>) {
    guard let first = indices.baseAddress, !indices.isEmpty else { return }
    ddp_prefetch_rows(
      dataset.samples.base.assumingMemoryBound(to: UInt8.self), featureCount * dataset.pixelFormat.byteCount, first,
      indices.count)
  }

  /// Rows `range` of `dataset`, in order, for evaluation. `range.count <= maxBatch`.
  public func assemble(from dataset: Dataset, range: Range<Int>) {
    precondition(
      dataset.featureCount == featureCount, "dataset.featureCount must match the assembler's")
    precondition(range.count <= maxBatch, "at most maxBatch rows")
    precondition(
      range.lowerBound >= 0 && range.upperBound <= dataset.count,
      "range must lie within the dataset")
    if dataset.layout == .nchw {
      Self.copyRows(range, of: dataset, into: inputs)
    } else {
      for (slot, row) in range.enumerated() { Self.copySample(row, of: dataset, into: inputs + slot * featureCount) }
    }
    normalize(inputs, samples: range.count)
    for (slot, row) in range.enumerated() {
      labels[slot] = dataset.labels[row]
    }
  }

  /// One sample in place: the window of rows dy − P ..< dy − P + height and columns likewise of the image
  /// zero-padded by P, then mirrored left to right when `flip`.
  private func transform(_ x: UnsafeMutablePointer<Float>, _ draw: (dy: Int, dx: Int, flip: Bool)) {
    sample.update(from: x, count: featureCount)
    let pad = preprocessing.randomCrop
    for ch in 0..<channels {
      let source = sample + ch * height * width
      let target = x + ch * height * width
      for y in 0..<height {
        let sy = y + draw.dy - pad
        let row = target + y * width
        guard sy >= 0 && sy < height else {
          row.update(repeating: 0, count: width)
          continue
        }
        for xo in 0..<width {
          let sx = (draw.flip ? width - 1 - xo : xo) + draw.dx - pad
          row[xo] = sx >= 0 && sx < width ? source[sy * width + sx] : 0
        }
      }
    }
  }

  /// x = (x − mean[c]) / std[c] over `samples` samples from `x` (nothing without a normalisation).
  private func normalize(_ x: UnsafeMutablePointer<Float>, samples: Int) {
    guard let normalization = preprocessing.normalization else { return }
    let plane = height * width
    for s in 0..<samples {
      for ch in 0..<channels {
        let (mean, std) = (normalization.means[ch], normalization.stds[ch])
        let values = x + (s * channels + ch) * plane
        for i in 0..<plane { values[i] = (values[i] - mean) / std }
      }
    }
  }

  /// Sample `row` of `dataset` into `destination` (`featureCount` floats) in [c, h, w] order: bytes scaled to
  /// [0, 1], floats as they are.
  static func copySample(_ row: Int, of dataset: Dataset, into destination: UnsafeMutablePointer<Float>) {
    guard dataset.layout == .nhwc else {
      copyRows(row..<row + 1, of: dataset, into: destination)
      return
    }
    // [h, w, c] stored, [c, h, w] wanted: value (p, c) of the stored row goes to c·plane + p.
    let (channels, plane) = (dataset.sampleShape[0], dataset.sampleShape[1] * dataset.sampleShape[2])
    let start = row * dataset.featureCount
    switch dataset.pixelFormat {
    case .uint8:
      let source = dataset.samples.base.assumingMemoryBound(to: UInt8.self) + start
      for p in 0..<plane {
        for c in 0..<channels { destination[c * plane + p] = Float(source[p * channels + c]) / 255 }
      }
    case .float32:
      let source = dataset.samples.base.assumingMemoryBound(to: Float.self) + start
      for p in 0..<plane {
        for c in 0..<channels { destination[c * plane + p] = source[p * channels + c] }
      }
    }
  }

  /// Consecutive rows of a `[c, h, w]`-ordered dataset. Bytes are divided by 255, not multiplied by 1/255, so the
  /// values equal PyTorch's bit for bit; in the C kernel built for the CPU's widest vectors.
  private static func copyRows(
    _ rows: Range<Int>, of dataset: Dataset, into destination: UnsafeMutablePointer<Float>
  ) {
    let (start, count) = (rows.lowerBound * dataset.featureCount, rows.count * dataset.featureCount)
    switch dataset.pixelFormat {
    case .uint8:
      ddp_unit_floats_from_bytes(destination, dataset.samples.base.assumingMemoryBound(to: UInt8.self) + start, count)
    case .float32:
      destination.update(from: dataset.samples.base.assumingMemoryBound(to: Float.self) + start, count: count)
    }
  }
}
