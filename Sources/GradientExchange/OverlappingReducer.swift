import Communication
import Tensors

/// Overlaps the gradient all-reduce with the backward pass: finished gradient ranges are gathered into buckets
/// and each bucket's non-blocking all-reduce starts as soon as it is full, while the backward goes on with the
/// layers below. Open MPI progresses a non-blocking collective only inside MPI calls, so every
/// `gradientsReady` also tests the outstanding requests: the backward's row blocks are the progress points.
///
/// Note [Bucket order]: `Sequential.accumulateGradients(…gradientsReady:)` reports adjacent, descending ranges that end
/// at 0, the same on every rank, so every rank forms the same buckets and starts their collectives in the same
/// order (MPI requires it), like PyTorch's reducer. A bucket is [lower, upper) of the flat buffer; ranges only
/// extend it downwards. The scalar tail (loss sum, correct count, noise-scale norm) is written by the trainer
/// after the backward, so `finish` reduces it last, after every bucket has completed.
///
/// Each element is summed over the same ranks as in one all-reduce of the whole buffer; with K = 2 the result is
/// bitwise the same (a + b), with more ranks the summation order may differ (the equivalence tests allow 1e-5).
final class OverlappingReducer: GradientReducer {
  let communicator: Communicator
  /// Start a bucket once it holds at least this many gradients.
  let bucketElements: Int
  /// The number of parameters: the tail starts here.
  let parameterCount: Int
  /// The bucket being filled: [pendingLower, pendingUpper); empty when equal.
  private var pendingLower = 0
  private var pendingUpper = 0
  /// Started, not yet completed requests, in start order (capacity reserved up front: no allocation per step).
  private var outstanding: [CollectiveRequest] = []
  /// Set once a range arrives; `finish` falls back to one blocking all-reduce when the backward reported none.
  private var sawRanges = false
  /// The model's gradient buffer, which the ranges index (fixed for the run).
  private let buffer: FloatBuffer

  /// The default bucket: 2¹⁵ gradients (128 KB); see BENCHMARKS.md for how it was chosen.
  static let defaultBucketElements = 1 << 15

  init(
    communicator: Communicator, gradients: FloatBuffer, parameterCount: Int,
    bucketElements: Int = defaultBucketElements
  ) {
    precondition(bucketElements >= 1 && gradients.count >= parameterCount)
    self.communicator = communicator
    self.buffer = gradients
    self.parameterCount = parameterCount
    self.bucketElements = bucketElements
    outstanding.reserveCapacity(64)
  }

  func gradientsReady(_ range: Range<Int>) {
    if !sawRanges {
      sawRanges = true
      pendingLower = range.upperBound
      pendingUpper = range.upperBound
    }
    precondition(
      range.upperBound == pendingLower, "gradient ranges must be adjacent and descending")
    pendingLower = range.lowerBound
    if pendingUpper - pendingLower >= bucketElements || pendingLower == 0 {
      start()
    }
    progress()
  }

  var name: String { "MPI all-reduce in buckets, overlapping the backward" }
  var wantsGradientRanges: Bool { true }

  func finish(_ gradients: FloatBuffer) throws -> FloatBuffer {
    defer {
      sawRanges = false
      outstanding.removeAll(keepingCapacity: true)
    }
    guard sawRanges else {
      // No ranges this step (e.g. a noise-scale step): everything at once, as BlockingReducer does.
      try communicator.allReduceSum(gradients.buffer)
      return gradients
    }
    if let error = deferredError { throw error }
    precondition(
      pendingLower == 0 && pendingUpper == 0, "the backward did not report every gradient")
    precondition(gradients === buffer, "finish with another buffer than the ranges refer to")
    for request in outstanding { try communicator.wait(request) }
    let tail = UnsafeMutableBufferPointer(
      start: gradients.pointer + parameterCount, count: gradients.count - parameterCount)
    try communicator.allReduceSum(tail)
    return gradients
  }

  /// An error from a start or test inside the backward (which cannot throw); rethrown by `finish`.
  private var deferredError: Error?

  private func start() {
    let bucket = UnsafeMutableBufferPointer(
      start: buffer.pointer + pendingLower, count: pendingUpper - pendingLower)
    pendingUpper = pendingLower
    guard deferredError == nil else { return }
    do {
      let request = try communicator.startAllReduceSum(bucket)
      if request != .completed { outstanding.append(request) }
    } catch {
      deferredError = error
    }
  }

  /// Tests the oldest incomplete request; a completed one is dropped from the front.
  private func progress() {
    guard deferredError == nil else { return }
    do {
      while let first = outstanding.first, try communicator.test(first) {
        outstanding.removeFirst()
      }
    } catch {
      deferredError = error
    }
  }
}
