import CKernels

/// Reused buffers for one batch: gathers byte rows of a `Dataset` and scales them to [0, 1] as `Float(p) / 255`
/// (PyTorch's `ToTensor`, with no normalisation), and widens the labels to `Int32`.
///
/// Allocated once per run; `assemble` allocates nothing, so the training loop's steady state allocates nothing.
public final class BatchAssembler {
  public let featureCount: Int
  public let maxBatch: Int
  /// `[maxBatch, featureCount]` row-major; after `assemble`, the first n rows hold the batch.
  public let inputs: UnsafeMutablePointer<Float>
  /// `[maxBatch]`; after `assemble`, the first n entries hold the batch's labels.
  public let labels: UnsafeMutablePointer<Int32>

  public init(featureCount: Int, maxBatch: Int) {
    precondition(featureCount > 0 && maxBatch > 0, "featureCount and maxBatch must be positive")
    self.featureCount = featureCount
    self.maxBatch = maxBatch
    inputs = .allocate(capacity: maxBatch * featureCount)
    inputs.initialize(repeating: 0, count: maxBatch * featureCount)
    labels = .allocate(capacity: maxBatch)
    labels.initialize(repeating: 0, count: maxBatch)
  }

  deinit {
    inputs.deallocate()
    labels.deallocate()
  }

  /// Rows `indices[i]` of `dataset` into batch row i, in the order given. `indices.count <= maxBatch`.
  public func assemble(from dataset: Dataset, indices: UnsafeBufferPointer<Int32>) {
    precondition(
      dataset.featureCount == featureCount, "dataset.featureCount must match the assembler's")
    precondition(indices.count <= maxBatch, "at most maxBatch indices")
    dataset.pixels.withUnsafeBufferPointer { pixels in
      dataset.labels.withUnsafeBufferPointer { datasetLabels in
        for (slot, index) in indices.enumerated() {
          let row = Int(index)
          precondition(row >= 0 && row < dataset.count, "index out of the dataset's range")
          Self.scale(
            pixels.baseAddress! + row * featureCount, into: inputs + slot * featureCount,
            count: featureCount)
          labels[slot] = Int32(datasetLabels[row])
        }
      }
    }
  }

  /// Starts loading rows `indices` of `dataset` into the CPU's caches and returns at once, so that a later
  /// `assemble` of them finds them there (the dataset is far larger than the caches, and its rows are read in a
  /// shuffled order the hardware prefetchers cannot guess).
  public func prefetch(from dataset: Dataset, indices: UnsafeBufferPointer<Int32>) {
    guard let first = indices.baseAddress, !indices.isEmpty else { return }
    dataset.pixels.withUnsafeBufferPointer { pixels in
      ddp_prefetch_rows(pixels.baseAddress!, featureCount, first, indices.count)
    }
  }

  /// Rows `range` of `dataset`, in order, for evaluation. `range.count <= maxBatch`.
  public func assemble(from dataset: Dataset, range: Range<Int>) {
    precondition(
      dataset.featureCount == featureCount, "dataset.featureCount must match the assembler's")
    precondition(range.count <= maxBatch, "at most maxBatch rows")
    precondition(
      range.lowerBound >= 0 && range.upperBound <= dataset.count,
      "range must lie within the dataset")
    dataset.pixels.withUnsafeBufferPointer { pixels in
      Self.scale(
        pixels.baseAddress! + range.lowerBound * featureCount, into: inputs,
        count: range.count * featureCount)
    }
    for (slot, row) in range.enumerated() {
      labels[slot] = Int32(dataset.labels[row])
    }
  }

  /// A division, not a multiplication by 1/255, so the values equal PyTorch's bit for bit; in the C kernel built
  /// for the CPU's widest vectors.
  @inline(__always)
  private static func scale(
    _ source: UnsafePointer<UInt8>, into destination: UnsafeMutablePointer<Float>, count: Int
  ) {
    ddp_unit_floats_from_bytes(destination, source, count)
  }
}
