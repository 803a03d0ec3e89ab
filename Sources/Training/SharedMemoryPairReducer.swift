import Communication
import Tensors

/// Two ranks on one host (K = 2) sum through shared memory with one synchronization a step, and each rank's
/// gradients reach the other core through memory, not out of this core's cache (Note [Streaming between two
/// cores]).
///
/// The window holds two sets of two slots, `stride` floats each (the gradient buffer's length rounded up to a
/// cache line):
///
///     set 0: slot 0 | slot 1 || set 1: slot 0 | slot 1
///
/// Step s uses set s % 2. The model's gradients stay in the rank's own buffer. A step's `finish`:
///   1. copies the rank's gradients into its slot of the set with non-temporal stores;
///   2. synchronizes: both slots of the set hold the step's gradients;
///   3. sums[i] = slot₀[i] + slot₁[i] over the whole buffer (parameters and scalar tail), reading its own
///      gradients from its buffer and the other rank's from its slot; `sums` is this rank's and the optimizer
///      reads it there. With SGD the trainer asks for `finishLeavingParameterSum` instead: only the scalar tail is
///      summed, and the update adds the two addends of each parameter's gradient in its own pass.
///
/// Note [Two sets need one synchronization]: a rank writes set s % 2 again at step s + 2, after passing step
/// s + 1's synchronization; the other rank reaches that one only after it has read the set, at step s.
///
/// Note [Streaming between two cores]: a cache line written by one core and read by the other costs a round trip
/// between the cores when it is read and another when it is written again (the reader's copy is invalidated).
/// On the project's 2-vCPU VMs that round trip is ~60 ns or ~330 ns, depending on where the hypervisor puts the
/// vCPUs at the moment (`bench/cross_core_latency.c`), and `SharedMemoryReducer`'s two passes over such lines cost
/// 0.1 ms a step in the first case and 0.6 ms in the second (`bench/pair_exchange.c`, BENCHMARKS.md). Stored with
/// non-temporal stores the lines go to memory: the reader fetches them from there, as it would any other memory,
/// and the writer's next stores invalidate the reader's copy without waiting. The exchange then costs about the
/// same wherever the vCPUs run. K ≥ 3 keeps `SharedMemoryReducer`: reading every other rank's whole slot would
/// move K − 1 gradients into each rank.
///
/// slot₀ + slot₁ is the same addition as `SharedMemoryReducer`, `DeterministicReducer` and `--simulate-workers 2`
/// make, so the sums are identical on both ranks and bit for bit what one process simulating the two computes.
final class SharedMemoryPairReducer: AddendReducer {
  let window: SharedMemoryWindow
  let rank: Int
  /// The gradient buffer's length: parameters plus the scalar tail.
  let count: Int
  /// Floats from one slot to the next: `count` rounded up to 16 (64 bytes), so no two slots share a line.
  let stride: Int
  /// Where `finish` leaves the sums (this rank's memory, not the window).
  let sums: FloatBuffer
  private let slots: UnsafeMutablePointer<Float>
  /// The step's set: 0 or 1, flipped by every `finish`.
  private var set = 0

  var name: String { "shared memory (2 ranks on one host), summed in rank order" }

  /// The reducer for `count` gradients when the communicator is two ranks sharing memory, else nil. Collective.
  static func make(communicator: Communicator, count: Int) throws -> SharedMemoryPairReducer? {
    guard communicator.size == 2 else { return nil }
    let bytes = 4 * SharedMemoryReducer.stride(for: count) * MemoryLayout<Float>.stride
    guard let window = try communicator.allocateSharedMemory(byteCount: bytes) else { return nil }
    return SharedMemoryPairReducer(window: window, rank: communicator.rank, count: count)
  }

  init(window: SharedMemoryWindow, rank: Int, count: Int) {
    precondition(rank == 0 || rank == 1, "a pair has ranks 0 and 1")
    stride = SharedMemoryReducer.stride(for: count)
    precondition(window.byteCount >= 4 * stride * MemoryLayout<Float>.stride, "window too small")
    precondition(Int(bitPattern: window.base) % 64 == 0, "the window must start on a cache line")
    self.window = window
    self.rank = rank
    self.count = count
    slots = window.base.bindMemory(to: Float.self, capacity: 4 * stride)
    sums = FloatBuffer(count: count)
  }

  /// Slot `owner` of set `set`.
  private func slot(_ owner: Int, set: Int) -> UnsafeMutablePointer<Float> { slots + (2 * set + owner) * stride }

  func finish(_ buffer: FloatBuffer) throws -> FloatBuffer {
    let (first, second) = try exchange(buffer)
    Elementwise.sum(first, second, into: sums.pointer, count: count)
    return sums
  }

  /// The update adds the parameters' gradients itself (`TwoAddendOptimizer`): only the scalar tail is summed here.
  func finishLeavingParameterSum(_ buffer: FloatBuffer, parameterCount: Int) throws -> (
    sums: FloatBuffer, first: UnsafePointer<Float>, second: UnsafePointer<Float>
  ) {
    precondition(parameterCount <= count)
    let (first, second) = try exchange(buffer)
    Elementwise.sum(
      first + parameterCount, second + parameterCount, into: sums.pointer + parameterCount,
      count: count - parameterCount)
    return (sums, first, second)
  }

  /// Steps 1-2: streams `buffer` into this rank's slot of the step's set and synchronizes. Returns slot₀ and
  /// slot₁'s contents in rank order, this rank's read from `buffer` (which it has in cache), valid until the next
  /// step's `exchange` (Note [Two sets need one synchronization]).
  private func exchange(_ buffer: FloatBuffer) throws -> (UnsafePointer<Float>, UnsafePointer<Float>) {
    precondition(buffer.count == count, "the gradient buffer must be \(count) floats")
    defer { set = 1 - set }
    Elementwise.streamCopy(buffer.pointer, to: slot(rank, set: set), count: count)
    try window.synchronize()
    let other = UnsafePointer(slot(1 - rank, set: set))
    let own = UnsafePointer(buffer.pointer)
    return rank == 0 ? (own, other) : (other, own)
  }
}
