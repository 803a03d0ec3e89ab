import Communication
import Tensors

/// Sums the ranks' gradients through memory every rank maps (all ranks on one host): no copy through a transport,
/// no second pass to hand the sums back; what is left is each rank reading the others' gradients once.
///
/// The window holds K + 1 buffers of `stride` floats (the gradient buffer's length rounded up to a cache line):
///
///     slot 0 | slot 1 | … | slot K−1 | sums
///
/// Slot r is rank r's `model.gradients`: the backward writes straight into it. A step's `finish`:
///   1. synchronize: every slot holds its rank's finished gradient (and scalar tail);
///   2. rank r adds the slots in rank order, ((slot₀ + slot₁) + slot₂) + …, over its shard of the elements
///      (K cache-line-aligned pieces of [0, count)), into `sums`;
///   3. synchronize: `sums` is complete on every rank; `finish` returns it and the optimizer reads it.
///
/// Note [Shared slots need no third synchronization]: a rank writes its slot again (zeroGradients) only after 3,
/// when every rank has finished reading the slots in 2; it writes `sums` again only after the next step's 1, which
/// no rank reaches before it has used this step's sums (its update). Between steps nothing reads the gradients.
///
/// Every element is the same additions in the same order as `DeterministicReducer` and `--simulate-workers`, so
/// the sums are identical on every rank and bit for bit what one process simulating the K workers computes.
final class SharedMemoryReducer: GradientReducer {
  let window: SharedMemoryWindow
  let rank: Int
  let size: Int
  /// The gradient buffer's length: parameters plus the scalar tail.
  let count: Int
  /// Floats from one slot to the next: `count` rounded up to 16 (64 bytes), so no two buffers share a line.
  let stride: Int
  /// This rank's slot, to be the model's gradient buffer.
  let ownSlot: FloatBuffer
  /// Where `finish` leaves the sums.
  let sums: FloatBuffer
  /// The elements this rank adds up: K pieces of `count`, each a whole number of cache lines except the last.
  let shard: Range<Int>
  private let slots: UnsafeMutablePointer<Float>

  var name: String { "shared memory (\(size) ranks on one host), summed in rank order" }

  /// The reducer for `count` gradients, or nil when the communicator has no shared memory for this world (ranks on
  /// several hosts, or a world of one). Collective.
  static func make(communicator: Communicator, count: Int) throws -> SharedMemoryReducer? {
    guard communicator.size > 1 else { return nil }
    let bytes = (communicator.size + 1) * stride(for: count) * MemoryLayout<Float>.stride
    guard let window = try communicator.allocateSharedMemory(byteCount: bytes) else { return nil }
    return SharedMemoryReducer(window: window, rank: communicator.rank, size: communicator.size, count: count)
  }

  /// `count` rounded up to a whole number of cache lines (16 floats).
  static func stride(for count: Int) -> Int { (count + 15) / 16 * 16 }

  init(window: SharedMemoryWindow, rank: Int, size: Int, count: Int) {
    stride = Self.stride(for: count)
    precondition(window.byteCount >= (size + 1) * stride * MemoryLayout<Float>.stride, "window too small")
    self.window = window
    self.rank = rank
    self.size = size
    self.count = count
    slots = window.base.bindMemory(to: Float.self, capacity: (size + 1) * stride)
    ownSlot = FloatBuffer(viewing: slots + rank * stride, count: count, owner: window)
    sums = FloatBuffer(viewing: slots + size * stride, count: count, owner: window)
    shard = Self.piece(of: 0..<count, rank: rank, size: size)
  }

  /// Rank `rank`'s piece of `range` among `size` ranks: `size` pieces, each a whole number of cache lines (16
  /// floats) except the last; some may be empty.
  static func piece(of range: Range<Int>, rank: Int, size: Int) -> Range<Int> {
    let length = ((range.count + size - 1) / size + 15) / 16 * 16
    let lower = min(range.lowerBound + rank * length, range.upperBound)
    return lower..<min(lower + length, range.upperBound)
  }

  /// sums[i] = ((slot₀[i] + slot₁[i]) + slot₂[i]) + … over `piece`, for `size` ≥ 2 slots `stride` floats apart: the
  /// first addition in one pass over both slots, then one per slot.
  static func sumSlots(
    _ slots: UnsafeMutablePointer<Float>, stride: Int, size: Int, over piece: Range<Int>,
    into sums: UnsafeMutablePointer<Float>
  ) {
    guard !piece.isEmpty else { return }
    let first = slots + piece.lowerBound
    let out = sums + piece.lowerBound
    Elementwise.sum(first, first + stride, into: out, count: piece.count)
    for other in 2..<max(size, 2) {
      RankOrderSum.add(first + other * stride, into: out, count: piece.count)
    }
  }

  func finish(_ buffer: FloatBuffer) throws -> FloatBuffer {
    precondition(buffer === ownSlot, "the model's gradients must live in this rank's slot")
    try window.synchronize()
    Self.sumSlots(slots, stride: stride, size: size, over: shard, into: sums.pointer)
    try window.synchronize()
    return sums
  }
}
