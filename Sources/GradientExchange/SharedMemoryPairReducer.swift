import CKernels
import Communication
import Tensors

/// Two ranks on one host (K = 2) sum through shared memory in whichever of two exchanges is the faster for where
/// the two cores sit at the moment (Note [Two exchanges for two cores]).
///
/// The window holds a control line and seven buffers of `stride` floats (the gradient buffer's length rounded up
/// to a cache line):
///
///     control | slot 0 | slot 1 | sums | stream set 0: rank 0 | rank 1 | stream set 1: rank 0 | rank 1
///
/// Slot r is rank r's `model.gradients`: the backward writes straight into it. A step's `finish` is one of
/// - sharded (cores close), `SharedMemoryReducer`'s exchange:
///   1. synchronize: both slots hold the step's gradients;
///   2. rank r sums its shard of the elements, slot₀ + slot₁, into `sums`;
///   3. synchronize: `sums` is complete; the update reads it there.
/// - streamed (cores far), with the stream set s % 2 at step s:
///   1. the rank copies its slot into its stream buffer with non-temporal stores;
///   2. synchronize: both stream buffers hold the step's gradients;
///   3. the parameters' gradient is slot₀ + slot₁, its own slot read where it is and the other rank's from its
///      stream buffer. With SGD the update adds the two in its own pass (`finishLeavingParameterSum`); otherwise
///      `finish` sums them into this rank's `ownSums`.
///
/// Note [One synchronization for a streamed step]: a rank writes stream set s % 2 again at step s + 2 at the
/// earliest, after passing step s + 1's first synchronization; the other rank reaches that one only after reading
/// the set at step s. In a streamed step the other rank reads only the stream buffer, so the slot can be written
/// again at once. After a sharded step, nothing writes a slot or `sums` before every rank has passed its second
/// synchronization, as in `SharedMemoryReducer` (Note [Shared slots need no third synchronization]).
///
/// Note [Two exchanges for two cores]: a cache line written by one core and read by the other costs a round trip
/// between the cores when it is read, and another when it is written again (the reader's copy is invalidated). On
/// the project's 2-vCPU VMs that round trip is ~60 ns or ~330 ns, switching within seconds with where the
/// hypervisor puts the vCPUs (`bench/cross_core_latency.c`). Close, the sharded exchange is the cheaper: each rank
/// reads half of the other's gradients and half of the sums straight out of the other core's cache. Far, the same
/// reads cost ~0.35 ms a step for the MLP, and `train` at K=2 fell from ~130k to ~85k samples/s; lines written with
/// non-temporal stores go to memory, and the reader fetches them from there at memory speed wherever the cores are
/// (BENCHMARKS.md, `bench/pair_exchange.c`). So every `meetingInterval` steps the two ranks meet in the control
/// line (`ddp_pair_meet`): rank 0 times round trips of the line and picks streamed above `farRoundTripNanoseconds`,
/// sharded below, for both. K ≥ 3 keeps `SharedMemoryReducer`.
///
/// Both exchanges make the addition slot₀ + slot₁ that `SharedMemoryReducer`, `DeterministicReducer` and
/// `--simulate-workers 2` make, so the sums are identical on both ranks, whichever exchange ran, and bit for bit
/// what one process simulating the two computes.
final class SharedMemoryPairReducer: AddendReducer {
  enum Exchange: Equatable { case sharded, streamed }

  /// Steps between two meetings: often enough to follow the vCPUs' moves (seconds apart), rare enough to cost
  /// nothing (a meeting is 17 round trips, a few µs).
  static let meetingInterval = 256
  /// Round trips timed in a meeting.
  static let meetingRounds: Int32 = 16
  /// Above this mean round trip the streamed exchange is the faster (measured in meetings: 30-110 ns close,
  /// 280-400 ns far).
  static let farRoundTripNanoseconds = 150.0

  let window: SharedMemoryWindow
  let rank: Int
  /// The gradient buffer's length: parameters plus the scalar tail.
  let count: Int
  /// Floats from one buffer to the next: `count` rounded up to 16 (64 bytes), so no two buffers share a line.
  let stride: Int
  /// This rank's slot, to be the model's gradient buffer.
  let ownSlot: FloatBuffer
  /// Where a sharded step leaves the sums (in the window).
  let sharedSums: FloatBuffer
  /// Where a streamed `finish` leaves them (this rank's memory).
  let ownSums: FloatBuffer
  /// The elements this rank sums in a sharded step.
  let shard: Range<Int>
  /// nil: the ranks meet and choose; else step i uses schedule[i % schedule.count] (tests).
  let schedule: [Exchange]?
  /// The exchange the steps use until the next meeting, and the round trip it was chosen from (rank 0's).
  private(set) var exchange: Exchange = .sharded
  private(set) var lastRoundTripNanoseconds = 0.0
  /// Steps each exchange ran, for `bench` and the tests.
  private(set) var steps: [Exchange: Int] = [.sharded: 0, .streamed: 0]
  private let control: UnsafeMutablePointer<Int64>
  private let buffers: UnsafeMutablePointer<Float>
  private var meetingBase: Int64 = 0
  private var stepsUntilMeeting = 0
  private var stepsTaken = 0
  /// The stream set of the next streamed step: 0 or 1, flipped by every step.
  private var set = 0

  var name: String { "shared memory (2 ranks on one host), summed in rank order" }

  /// Bytes of the window for `count` gradients: the control line and seven buffers.
  static func windowBytes(count: Int) -> Int {
    (16 + 7 * SharedMemoryReducer.stride(for: count)) * MemoryLayout<Float>.stride
  }

  /// The reducer for `count` gradients when the communicator is two ranks sharing memory, else nil. Collective.
  static func make(
    communicator: Communicator, count: Int, schedule: [Exchange]? = nil
  ) throws -> SharedMemoryPairReducer? {
    guard communicator.size == 2 else { return nil }
    guard let window = try communicator.allocateSharedMemory(byteCount: windowBytes(count: count)) else { return nil }
    let reducer = SharedMemoryPairReducer(
      window: window, rank: communicator.rank, count: count, schedule: schedule)
    // The control line starts at zero (`ddp_pair_meet`); the window's memory need not.
    if communicator.rank == 0 { reducer.control.update(repeating: 0, count: 8) }
    try window.synchronize()
    return reducer
  }

  init(window: SharedMemoryWindow, rank: Int, count: Int, schedule: [Exchange]?) {
    precondition(schedule?.isEmpty != true, "an empty schedule")
    precondition(rank == 0 || rank == 1, "a pair has ranks 0 and 1")
    stride = SharedMemoryReducer.stride(for: count)
    precondition(window.byteCount >= Self.windowBytes(count: count), "window too small")
    precondition(Int(bitPattern: window.base) % 64 == 0, "the window must start on a cache line")
    self.window = window
    self.rank = rank
    self.count = count
    self.schedule = schedule
    control = window.base.bindMemory(to: Int64.self, capacity: 8)
    buffers = (window.base + 64).bindMemory(to: Float.self, capacity: 7 * stride)
    ownSlot = FloatBuffer(viewing: buffers + rank * stride, count: count, owner: window)
    sharedSums = FloatBuffer(viewing: buffers + 2 * stride, count: count, owner: window)
    ownSums = FloatBuffer(count: count)
    shard = SharedMemoryReducer.piece(of: 0..<count, rank: rank, size: 2)
  }

  /// Rank `owner`'s stream buffer of set `set`.
  private func stream(_ owner: Int, set: Int) -> UnsafeMutablePointer<Float> {
    buffers + (3 + 2 * set + owner) * stride
  }

  func finish(_ buffer: FloatBuffer) throws -> FloatBuffer {
    try finishLeavingParameterSum(buffer, parameterCount: 0).sums
  }

  /// Streamed: only the scalar tail is summed here; the update adds the parameters' two addends itself.
  func finishLeavingParameterSum(_ buffer: FloatBuffer, parameterCount: Int) throws -> (
    sums: FloatBuffer, addends: (first: UnsafePointer<Float>, second: UnsafePointer<Float>)?
  ) {
    precondition(parameterCount <= count)
    switch try startStep(buffer) {
    case .sharded: return (try shardedSum(), nil)
    case .streamed:
      let (first, second) = try streamedExchange()
      Elementwise.sum(
        first + parameterCount, second + parameterCount, into: ownSums.pointer + parameterCount,
        count: count - parameterCount)
      return (ownSums, (first, second))
    }
  }

  /// The step's exchange: after a meeting every `meetingInterval` steps, the one chosen there.
  private func startStep(_ buffer: FloatBuffer) throws -> Exchange {
    precondition(buffer === ownSlot, "the model's gradients must live in this rank's slot")
    if stepsUntilMeeting == 0 { meet() }
    if let schedule { exchange = schedule[stepsTaken % schedule.count] }
    stepsTaken += 1
    stepsUntilMeeting -= 1
    steps[exchange, default: 0] += 1
    return exchange
  }

  /// The two ranks meet in the control line and leave with the same `exchange` for the next `meetingInterval`
  /// steps, chosen by rank 0 from the round trips it timed. Collective: both ranks call it at the same step.
  func meet() {
    var roundTrip = 0.0
    let choice = ddp_pair_meet(
      control, Int32(rank), &meetingBase, Self.meetingRounds, Self.farRoundTripNanoseconds, &roundTrip)
    exchange = choice == 1 ? .streamed : .sharded
    lastRoundTripNanoseconds = roundTrip
    stepsUntilMeeting = Self.meetingInterval
  }

  /// Sharded steps 1-3; returns the shared sums.
  private func shardedSum() throws -> FloatBuffer {
    defer { set = 1 - set }
    try window.synchronize()
    SharedMemoryReducer.sumSlots(buffers, stride: stride, size: 2, over: shard, into: sharedSums.pointer)
    try window.synchronize()
    return sharedSums
  }

  /// Streamed steps 1-2. Returns slot₀ and slot₁'s contents in rank order: this rank's own slot (in its cache),
  /// the other's stream buffer; valid until the next step's exchange (Note [One synchronization for a streamed
  /// step]).
  private func streamedExchange() throws -> (UnsafePointer<Float>, UnsafePointer<Float>) {
    defer { set = 1 - set }
    Elementwise.streamCopy(ownSlot.pointer, to: stream(rank, set: set), count: count)
    try window.synchronize()
    let other = UnsafePointer(stream(1 - rank, set: set))
    let own = UnsafePointer(ownSlot.pointer)
    return rank == 0 ? (own, other) : (other, own)
  }
}
