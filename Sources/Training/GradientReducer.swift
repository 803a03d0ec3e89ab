import Communication
import Tensors

/// How a step's per-rank gradients become their sum on every rank.
///
/// The trainer calls `finish` once per step, after the last micro-batch's backward, with the whole flat buffer
/// (parameters' gradients plus the scalar tail). Implementations that overlap communication with backward also
/// receive `gradientsReady(_:)` for each range the backward has finished (reverse layer order), and must still
/// reduce everything in `finish`.
protocol GradientReducer: AnyObject {
  func gradientsReady(_ range: Range<Int>)
  func finish(_ buffer: FloatBuffer) throws
}

/// One blocking all-reduce of the whole buffer (MPI picks the algorithm).
final class BlockingReducer: GradientReducer {
  let communicator: Communicator
  init(communicator: Communicator) { self.communicator = communicator }
  func gradientsReady(_ range: Range<Int>) {}
  func finish(_ buffer: FloatBuffer) throws { try communicator.allReduceSum(buffer.buffer) }
}
