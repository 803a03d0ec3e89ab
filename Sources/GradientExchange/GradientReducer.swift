import Communication
import Tensors

/// How a step's per-rank gradients become their sum on every rank.
///
/// The trainer calls `workerFinished` after each worker's gradients are complete in the flat buffer (parameters'
/// gradients plus the scalar tail; one worker per process, except with --simulate-workers), then `finish` once per
/// step. Implementations that overlap communication with the backward say so (`wantsGradientRanges`), receive
/// `gradientsReady(_:)` for each range the backward has finished (reverse layer order), and must still reduce
/// everything in `finish`.
package protocol GradientReducer: AnyObject {
  /// What the run header and `ddp-train bench` call this way of reducing.
  var name: String { get }
  /// Whether the backward should report finished ranges (`gradientsReady`) as it goes.
  var wantsGradientRanges: Bool { get }
  func gradientsReady(_ range: Range<Int>)
  /// Worker `worker`'s gradients are complete in `gradients` (the buffer is reused for the next worker).
  func workerFinished(_ worker: Int, gradients: FloatBuffer)
  /// Sums `buffer` over the ranks and returns where the sums are: `buffer` itself for the in-place reducers,
  /// a buffer of the same length otherwise (valid until the next step's `finish`).
  func finish(_ buffer: FloatBuffer) throws -> FloatBuffer
  /// State this rank carries from one step to the next besides the model and optimizer (the error-feedback
  /// residuals of `--compress`), which a checkpoint must hold for a resumed run to stay bitwise; nil when none.
  var carriedState: CarriedReducerState? { get }
}

/// A reducer's per-rank state between steps, and what it is only valid for: a resumed run restores it only when
/// its own reducer describes itself by the same `layout` (the same compression, hosts and ranks per host).
package struct CarriedReducerState {
  /// e.g. "bf16 error feedback over 2 hosts × 2 ranks (2 × 235160 values)"
  package let layout: String
  /// This rank's buffers by name (the checkpoint's tensor names), saved and restored in this order.
  package let buffers: [(name: String, values: FloatBuffer)]

  /// Floats of all the buffers together.
  package var count: Int { buffers.reduce(0) { $0 + $1.values.count } }
}

/// What step 3 hands the update: the summed buffer, whose parameters' part may be left as two addends.
package struct ReducedGradients {
  /// The sums: always the scalar tail (what follows the parameters' gradients); the parameters' gradients too,
  /// unless `addends` is set.
  package let sums: FloatBuffer
  /// The parameters' summed gradient as first[i] + second[i] (rank order), for the update's pass to add.
  package let addends: (first: UnsafePointer<Float>, second: UnsafePointer<Float>)?
}

/// A reducer that can leave the parameters' last addition to the optimizer (`TwoAddendOptimizer`), which adds
/// the two rank-ordered addends in its own pass: one pass fewer over the gradient each step.
protocol AddendReducer: GradientReducer {
  /// `finish`, except that when `addends` is set, the first `parameterCount` elements are not summed into `sums`:
  /// their sum is `first[i] + second[i]`, valid until the next step's `finish`. `sums` always holds the summed
  /// scalar tail (what follows `parameterCount`).
  func finishLeavingParameterSum(_ buffer: FloatBuffer, parameterCount: Int) throws -> (
    sums: FloatBuffer, addends: (first: UnsafePointer<Float>, second: UnsafePointer<Float>)?
  )
}

extension GradientReducer {
  package var carriedState: CarriedReducerState? { nil }
  package var wantsGradientRanges: Bool { false }
  package func gradientsReady(_ range: Range<Int>) {}
  package func workerFinished(_ worker: Int, gradients: FloatBuffer) {}
}

/// `--simulate-workers K` in one process: the K virtual workers' buffers, one after another, summed in rank order
/// into `sums`, ((g₀ + g₁) + g₂) + ..., the same additions as `DeterministicReducer` and `SharedMemoryReducer`.
final class SimulatedWorkersReducer: GradientReducer {
  /// The running sum; `finish` returns it.
  let sums: FloatBuffer

  init(count: Int) { sums = FloatBuffer(count: count) }

  var name: String { "simulated workers, summed in rank order" }

  func workerFinished(_ worker: Int, gradients: FloatBuffer) {
    precondition(gradients.count == sums.count, "simulated workers' buffers must match the sums")
    if worker == 0 {
      sums.pointer.update(from: gradients.pointer, count: sums.count)
    } else {
      RankOrderSum.add(gradients.pointer, into: sums.pointer, count: sums.count)
    }
  }

  func finish(_ buffer: FloatBuffer) throws -> FloatBuffer { sums }
}

/// One blocking all-reduce of the whole buffer (MPI picks the algorithm).
final class BlockingReducer: GradientReducer {
  let communicator: Communicator
  init(communicator: Communicator) { self.communicator = communicator }
  var name: String { "MPI all-reduce" }
  func finish(_ buffer: FloatBuffer) throws -> FloatBuffer {
    try communicator.allReduceSum(buffer.buffer)
    return buffer
  }
}

/// `--deterministic`: every rank gathers all ranks' buffers and sums them in rank order, ((g₀ + g₁) + g₂) + ...,
/// so the result does not depend on MPI's choice of algorithm, and equals what `--simulate-workers K` computes
/// in one process, bit for bit. Costs K times the memory traffic of an all-reduce; meant for debugging.
final class DeterministicReducer: GradientReducer {
  let communicator: Communicator
  private var gathered: FloatBuffer?

  init(communicator: Communicator) { self.communicator = communicator }

  var name: String { "MPI all-gather, summed in rank order" }

  func finish(_ buffer: FloatBuffer) throws -> FloatBuffer {
    let count = buffer.count
    let ranks = communicator.size
    if gathered?.count != count * ranks { gathered = FloatBuffer(count: count * ranks) }
    let all = gathered!
    try communicator.allGather(
      UnsafeRawBufferPointer(buffer.buffer), into: UnsafeMutableRawBufferPointer(all.buffer))
    RankOrderSum.sum(all.pointer, ranks: ranks, count: count, into: buffer.pointer)
    return buffer
  }
}

/// The one definition of "sum in rank order" shared by `DeterministicReducer` and the simulated workers.
enum RankOrderSum {
  /// out[i] = ((parts[0][i] + parts[1][i]) + parts[2][i]) + ...; parts are `count`-long slices, back to back.
  static func sum(_ parts: UnsafePointer<Float>, ranks: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
    out.update(from: parts, count: count)
    for rank in 1..<max(ranks, 1) { add(parts + rank * count, into: out, count: count) }
  }

  /// out[i] += part[i], element by element (the same rounding as the sum above).
  static func add(_ part: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int) {
    Elementwise.add(part, into: out, count: count)
  }
}
