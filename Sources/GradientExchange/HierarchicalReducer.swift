import Communication
import Tensors

/// Sums gradients over ranks on several hosts in two levels: through shared memory within each host, then across
/// hosts among the ranks with the same local rank (the "peers"), each moving only its 1/L of the gradient over
/// the network (L ranks per host, H hosts). Horovod's hierarchical all-reduce and MLX's `Group.split` are the
/// models; the communicators come from `splitByHost` and `split(color: localRank)`.
///
/// The host's window holds L + 1 buffers of `stride` floats, as `SharedMemoryReducer`'s: slot r is local rank r's
/// gradient buffer, then the host sums. A range of the buffer (a bucket) is reduced in three moves:
///   1. synchronize within the host: every slot holds the range's final gradients;
///   2. local rank r adds the slots in rank order over its piece of the range (L cache-line-aligned pieces) into
///      the host sums, and starts that piece's sum across hosts (`PeerExchange`, fp32 or 16-bit);
///   3. at the end of the step, once every piece is summed across hosts, synchronize within the host again: the
///      sums are complete and every local rank reads all of them.
/// With one rank per host (L = 1) there is no window: the buffer is summed across hosts in place.
///
/// Without overlap the whole buffer is one range, reduced in `finish`. With overlap (`--overlap-hosts`) the
/// backward's finished ranges are gathered into buckets of `bucketElements` (reverse layer order, as
/// `OverlappingReducer` does; Note [Bucket order] there) and each bucket goes through 1-2 as soon as it is full,
/// its exchange progressing while the lower layers compute. The scalar tail (loss sum, correct count, noise-scale
/// norms), written after the backward, is always the last range and never compressed.
///
/// Every element is the host sum in local rank order, then the peers' sum (MPI's order for fp32, peer order for
/// 16-bit), so the sums are identical on every rank and equal a flat all-reduce to rounding (1e-5 relative in the
/// tests); `--deterministic` keeps the flat rank-order gather instead, which equals `--simulate-workers` bit for bit.
final class HierarchicalReducer: GradientReducer {
  let host: Communicator
  let exchange: PeerExchange
  let window: SharedMemoryWindow?
  /// The gradient buffer's length (parameters plus the scalar tail) and where the tail starts.
  let count: Int
  let parameterCount: Int
  let stride: Int
  /// This rank's gradient buffer (its slot in the window, or a buffer of its own when L = 1).
  let ownSlot: FloatBuffer
  /// Where `finish` leaves the sums: the window's last buffer, or `ownSlot` itself when L = 1.
  let sums: FloatBuffer
  let overlaps: Bool
  let bucketElements: Int
  let hosts: Int
  private let slots: UnsafeMutablePointer<Float>?
  /// The bucket being filled, [pendingLower, pendingUpper); see `OverlappingReducer`.
  private var pendingLower = 0
  private var pendingUpper = 0
  private var sawRanges = false
  /// An error from inside the backward (which cannot throw); rethrown by `finish`.
  private var deferredError: Error?

  var name: String {
    let level =
      window == nil
      ? "MPI across \(hosts) hosts × 1 rank"
      : "shared memory within \(hosts) hosts × \(host.size) ranks, MPI across hosts"
    let overlap = overlaps ? ", overlapping the backward" : ""
    let wire =
      exchange.compression == .none ? "" : ", \(exchange.compression.rawValue) across hosts with error feedback"
    return level + overlap + wire
  }

  var wantsGradientRanges: Bool { overlaps }

  /// The error-feedback residuals, sender's then owner's, when compressing; they depend on the layout (which
  /// elements this rank sends and owns), so they are valid only for the same hosts, ranks per host and format.
  var carriedState: CarriedReducerState? {
    guard let send = exchange.sendResidual, let owner = exchange.ownerResidual else { return nil }
    return CarriedReducerState(
      layout:
        "\(exchange.compression.rawValue) error feedback over \(hosts) hosts × \(host.size) "
        + (host.size == 1 ? "rank" : "ranks") + " (2 × \(count) values)",
      buffers: [("send_residual", send), ("owner_residual", owner)])
  }

  /// Bytes this rank sent to other hosts in the last step.
  var bytesSentLastStep: Int { exchange.bytesSentThisStep }

  /// How the world is laid out over hosts, or why it cannot be summed in two levels.
  struct Layout {
    var hosts: Int
    var ranksPerHost: Int
    var host: Communicator
    var peers: Communicator
  }

  enum LayoutResult {
    /// Every rank on one host: `SharedMemoryReducer`'s job.
    case oneHost
    /// Hosts with different numbers of ranks: the pieces would not line up; the flat all-reduce takes over.
    case unequal(ranksPerHost: [Int])
    case hosts(Layout)
  }

  /// Splits the world by host (collective). `ranksPerHost` lists each host's ranks for the unequal case, in the
  /// order of their lowest rank.
  static func layout(of communicator: Communicator) throws -> LayoutResult {
    let host = try communicator.splitByHost()
    if host.size == communicator.size { return .oneHost }
    // Each host's size, reported by its local rank 0 at the host's lowest world rank.
    var sizes = [Int64](repeating: 0, count: communicator.size)
    if host.rank == 0 { sizes[communicator.rank] = Int64(host.size) }
    try sizes.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }
    let perHost = sizes.filter { $0 > 0 }.map(Int.init)
    guard Set(perHost).count == 1 else { return .unequal(ranksPerHost: perHost) }
    let peers = try communicator.split(color: host.rank, key: communicator.rank)
    return .hosts(Layout(hosts: perHost.count, ranksPerHost: host.size, host: host, peers: peers))
  }

  /// The reducer for `count` gradients over `layout`, or nil when the host has no shared memory for L > 1 ranks.
  /// Collective.
  static func make(
    layout: Layout, count: Int, parameterCount: Int, compression: GradientCompression, overlaps: Bool,
    bucketElements: Int = OverlappingReducer.defaultBucketElements
  ) throws -> HierarchicalReducer? {
    var window: SharedMemoryWindow?
    if layout.ranksPerHost > 1 {
      let bytes = (layout.ranksPerHost + 1) * SharedMemoryReducer.stride(for: count) * MemoryLayout<Float>.stride
      window = try layout.host.allocateSharedMemory(byteCount: bytes)
      guard window != nil else { return nil }
    }
    // A second communicator over the same peers for the exchange's second phase (Note [Collective order]).
    let gather = try layout.peers.split(color: 0, key: layout.peers.rank)
    return HierarchicalReducer(
      host: layout.host, peers: layout.peers, gather: gather, hosts: layout.hosts, window: window, count: count,
      parameterCount: parameterCount, compression: compression, overlaps: overlaps, bucketElements: bucketElements)
  }

  init(
    host: Communicator, peers: Communicator, gather: Communicator, hosts: Int, window: SharedMemoryWindow?,
    count: Int, parameterCount: Int, compression: GradientCompression, overlaps: Bool, bucketElements: Int
  ) {
    precondition(count >= parameterCount && bucketElements >= 1)
    self.host = host
    self.hosts = hosts
    self.window = window
    self.count = count
    self.parameterCount = parameterCount
    self.overlaps = overlaps
    self.bucketElements = bucketElements
    stride = SharedMemoryReducer.stride(for: count)
    if let window {
      let size = host.size
      precondition(window.byteCount >= (size + 1) * stride * MemoryLayout<Float>.stride, "window too small")
      let slots = window.base.bindMemory(to: Float.self, capacity: (size + 1) * stride)
      self.slots = slots
      ownSlot = FloatBuffer(viewing: slots + host.rank * stride, count: count, owner: window)
      sums = FloatBuffer(viewing: slots + size * stride, count: count, owner: window)
    } else {
      slots = nil
      ownSlot = FloatBuffer(count: count)
      sums = ownSlot
    }
    exchange = PeerExchange(scatter: peers, gather: gather, compression: compression, values: sums)
  }

  /// Local rank r's piece of `range`: L pieces, each a whole number of cache lines except the last.
  func piece(of range: Range<Int>) -> Range<Int> {
    host.size > 1 ? SharedMemoryReducer.piece(of: range, rank: host.rank, size: host.size) : range
  }

  /// Moves 2 for `range` (move 1, the synchronization, is the caller's).
  private func sumWithinHostAndStart(_ range: Range<Int>, compressible: Bool) throws {
    let mine = piece(of: range)
    if let slots {
      SharedMemoryReducer.sumSlots(slots, stride: stride, size: host.size, over: mine, into: sums.pointer)
    }
    try exchange.start(mine, compressible: compressible)
  }

  func gradientsReady(_ range: Range<Int>) {
    guard deferredError == nil else { return }
    if !sawRanges {
      sawRanges = true
      exchange.beginStep()
      pendingLower = range.upperBound
      pendingUpper = range.upperBound
    }
    precondition(range.upperBound == pendingLower, "gradient ranges must be adjacent and descending")
    pendingLower = range.lowerBound
    do {
      if pendingUpper - pendingLower >= bucketElements || pendingLower == 0 {
        let bucket = pendingLower..<pendingUpper
        pendingUpper = pendingLower
        try window?.synchronize()
        try sumWithinHostAndStart(bucket, compressible: true)
      }
      try exchange.progress()
    } catch {
      deferredError = error
    }
  }

  func finish(_ buffer: FloatBuffer) throws -> FloatBuffer {
    precondition(buffer === ownSlot, "the model's gradients must live in this rank's slot")
    defer { sawRanges = false }
    if let error = deferredError {
      deferredError = nil
      throw error
    }
    if sawRanges {
      precondition(pendingLower == 0 && pendingUpper == 0, "the backward did not report every gradient")
      try window?.synchronize()
    } else {
      // No overlap (or a step whose backward reported no ranges): the parameters' gradients in one range.
      exchange.beginStep()
      try window?.synchronize()
      try sumWithinHostAndStart(0..<parameterCount, compressible: true)
    }
    try sumWithinHostAndStart(parameterCount..<count, compressible: false)
    try exchange.waitAll()
    try window?.synchronize()
    return sums
  }
}
