import Communication
import Foundation
import Tensors
import Testing

@testable import GradientExchange
@testable import Training

/// `OverlappingReducer` over 2-4 thread-ranks against a naive sum of what the ranks wrote: every element of the
/// parameters' gradients and of the scalar tail is summed exactly once, whatever the bucket size and however the
/// backward cuts its ranges, also when the collectives complete late (a communicator that defers them to `test`
/// and `wait`, as MPI progresses non-blocking collectives only inside MPI calls), and over several steps.
@Suite struct OverlappingReducerTests {
  /// Multiples of 1/4 below 2¹⁰: every sum of up to four is exact in Float, whatever the order of the additions,
  /// so any difference is a missed or doubled element, not rounding.
  static func value(rank: Int, element: Int, step: Int) -> Float {
    Float((rank + 1) * 31 + (element * 7 + step * 13) % 97) / 4
  }

  /// The backward's ranges for `parameterCount` gradients: adjacent, descending, ending at 0, of uneven sizes.
  static func ranges(parameterCount: Int, pieces: [Int]) -> [Range<Int>] {
    var ranges: [Range<Int>] = []
    var upper = parameterCount
    var index = 0
    while upper > 0 {
      let lower = max(0, upper - pieces[index % pieces.count])
      ranges.append(lower..<upper)
      upper = lower
      index += 1
    }
    return ranges
  }

  @Test(arguments: [2, 3, 4], [1, 64, 1 << 15])
  func everyElementIsSummedOnce(ranks: Int, bucketElements: Int) throws {
    let parameterCount = 1000
    let count = parameterCount + 3
    let steps = 3
    let results = ResultSlots(count: ranks * steps)
    try ThreadGroup(size: ranks).run { inner in
      let communicator = DeferringCommunicator(inner)
      let gradients = FloatBuffer(count: count)
      let reducer = OverlappingReducer(
        communicator: communicator, gradients: gradients, parameterCount: parameterCount,
        bucketElements: bucketElements)
      for step in 0..<steps {
        for element in 0..<count {
          gradients[element] = Self.value(rank: inner.rank, element: element, step: step)
        }
        // Ranges as the backward reports them; on step 1 none at all (a noise-scale step: one blocking reduce).
        if step != 1 {
          for range in Self.ranges(parameterCount: parameterCount, pieces: [37, 250, 1, 100]) {
            reducer.gradientsReady(range)
          }
        }
        let sums = try reducer.finish(gradients)
        #expect(sums === gradients)
        #expect(communicator.outstandingCount == 0, "finish returned with collectives still outstanding")
        results.set(inner.rank * steps + step, sums.array)
      }
    }
    for step in 0..<steps {
      let expected = (0..<count).map { element in
        (0..<ranks).reduce(Float(0)) { $0 + Self.value(rank: $1, element: element, step: step) }
      }
      for rank in 0..<ranks {
        let got = results.values[rank * steps + step]
        let wrong = (0..<count).filter { got[$0] != expected[$0] }
        #expect(
          wrong.isEmpty,
          "K=\(ranks) bucket \(bucketElements) step \(step) rank \(rank): elements \(wrong.prefix(5)) of \(wrong.count) wrong"
        )
      }
    }
  }
}

/// A communicator whose non-blocking all-reduces complete late: `startAllReduceSum` only queues the buffer, `test`
/// completes the oldest queued one on every second call, `wait` completes everything up to the request. Every
/// rank makes the same calls in the same order, so the blocking all-reduces underneath match across ranks.
final class DeferringCommunicator: Communicator {
  let inner: Communicator
  private var queue: [(slot: Int, buffer: UnsafeMutableBufferPointer<Float>)] = []
  private var nextSlot = 0
  private var tests = 0

  init(_ inner: Communicator) { self.inner = inner }

  var rank: Int { inner.rank }
  var size: Int { inner.size }
  var outstandingCount: Int { queue.count }

  /// Blocking, and independent of the queued requests (as MPI's are): it completes none of them.
  func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { try inner.allReduceSum(buffer) }
  func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws { try inner.allReduceSum(buffer) }
  func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Int64>) throws { try inner.allReduceMax(buffer) }
  func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
    try inner.broadcast(buffer, root: root)
  }
  func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws {
    try inner.allGather(send, into: receive)
  }
  func barrier() throws { try inner.barrier() }
  func abort(code: Int32) -> Never { inner.abort(code: code) }

  func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> CollectiveRequest {
    nextSlot += 1
    queue.append((nextSlot, buffer))
    return CollectiveRequest(slot: nextSlot)
  }

  func test(_ request: CollectiveRequest) throws -> Bool {
    tests += 1
    if tests % 2 == 0, let first = queue.first { try drain(through: first.slot) }
    return !queue.contains { $0.slot == request.slot }
  }

  func wait(_ request: CollectiveRequest) throws { try drain(through: request.slot) }

  private func drain(through slot: Int) throws {
    while let first = queue.first, first.slot <= slot {
      queue.removeFirst()
      try inner.allReduceSum(first.buffer)
    }
  }
}
