/// The only view of the world of workers that the trainer has.
///
/// Rank `0 ..< size`; every collective must be called by every rank, in the same order, with buffers of
/// the same length. A world of one (`SingleProcessCommunicator`) makes every collective a no-op, so the
/// trainer has no special case for it. Implementations: `SingleProcessCommunicator` (here),
/// `ThreadGroupCommunicator` (here, K ranks as threads of one process, for tests) and `MPICommunicator`
/// (module MPICommunication, the only code that links MPI).
public protocol Communicator: AnyObject {
  /// This worker's index, `0 ..< size`.
  var rank: Int { get }
  /// The number of workers K.
  var size: Int { get }

  /// Element-wise sum over all ranks, in place: afterwards every rank holds the same sums.
  func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
  /// Element-wise sum over all ranks, in place, in double precision (metrics, counts).
  func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws
  /// Element-wise maximum over all ranks, in place (agreeing on flags: "did any rank fail?").
  func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Int64>) throws
  /// Copies `root`'s bytes into every other rank's buffer (same length everywhere).
  func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
  /// Every rank's `send` bytes (same length on all ranks) into `receive`, concatenated in rank order;
  /// `receive.count == send.count · size`.
  func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws
  /// Returns once every rank has called it.
  func barrier() throws
  /// Ends the whole job at once with `code` (all ranks); used when one rank cannot go on.
  func abort(code: Int32) -> Never
  /// Ends this process's part in the world after its last collective (MPI_Finalize); a no-op without a transport.
  func finalize()

  /// Starts an element-wise sum over all ranks, in place, and returns at once; the buffer must be neither read
  /// nor written until `wait` (or a `test` that returned true) says the request is complete. Requests are
  /// collectives: every rank starts them in the same order. The default does the blocking `allReduceSum` and
  /// returns `.completed`, so a communicator without non-blocking collectives needs nothing.
  func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> CollectiveRequest
  /// Lets the request (and every other outstanding one) progress; true once it is complete. Never blocks.
  func test(_ request: CollectiveRequest) throws -> Bool
  /// Returns once the request is complete.
  func wait(_ request: CollectiveRequest) throws

  /// Starts an all-to-all of bytes: `send` holds `size` blocks of equal length, block j for rank j; `receive`
  /// (as long) gets rank j's block for this rank at block j. Buffers untouched until the request completes.
  func startAllToAll(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws
    -> CollectiveRequest
  /// Starts `allGather(_:into:)` without waiting for it (the same buffer rules as `startAllToAll`).
  func startAllGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws
    -> CollectiveRequest

  /// The ranks of this world that share this process's host, as a world of their own (ranked as in this world).
  /// Collective. A communicator that knows nothing of hosts (the default) puts every rank on one host.
  func splitByHost() throws -> Communicator
  /// The ranks that pass the same `color`, as a world of their own, ranked by `key` (ties by rank in this world).
  /// Collective. The default handles a world of one only.
  func split(color: Int, key: Int) throws -> Communicator

  /// `byteCount` bytes of memory that every rank maps, or nil when the ranks do not all share one host's memory
  /// (or the implementation has none: the default). Collective. The memory lives until the process ends.
  func allocateSharedMemory(byteCount: Int) throws -> SharedMemoryWindow?
}

/// Memory mapped by every rank of a world on one host: collectives done with plain loads and stores, no copies
/// through a transport. Which rank writes which bytes when is the caller's protocol; `synchronize` orders it.
public protocol SharedMemoryWindow: AnyObject {
  /// The first byte, 64-byte aligned; the same bytes on every rank (the address may differ between processes).
  var base: UnsafeMutableRawPointer { get }
  var byteCount: Int { get }
  /// Returns once every rank has called it, and every rank's stores before its call are visible to every
  /// rank's loads after its return (a barrier with the memory ordering shared memory needs). Collective.
  func synchronize() throws
}

/// A handle on a non-blocking collective started by `Communicator.startAllReduceSum(_:)`: a plain value, so
/// starting one allocates nothing. Only the communicator that returned it can interpret it.
public struct CollectiveRequest: Hashable, Sendable {
  /// The implementation's slot for the request; -1 means already complete.
  public let slot: Int
  public init(slot: Int) { self.slot = slot }
  /// A request that finished before it was returned (the blocking default).
  public static let completed = CollectiveRequest(slot: -1)
}

extension Communicator {
  /// Sum of an array across ranks (convenience for small metric vectors).
  public func allReduceSum(_ values: inout [Double]) throws {
    try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
  }

  public func allReduceSum(_ values: inout [Float]) throws {
    try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
  }

  /// Broadcasts an array of trivial values from `root` (the arrays must have the same count).
  public func broadcast<T: BitwiseCopyable>(_ values: inout [T], root: Int) throws {
    try values.withUnsafeMutableBytes { try broadcast($0, root: root) }
  }

  public var isCoordinator: Bool { rank == 0 }

  /// Every rank's `bytes` (same length on all ranks), concatenated in rank order.
  public func allGather(_ bytes: [UInt8]) throws -> [UInt8] {
    var gathered = [UInt8](repeating: 0, count: bytes.count * size)
    try bytes.withUnsafeBytes { send in
      try gathered.withUnsafeMutableBytes { receive in try allGather(send, into: receive) }
    }
    return gathered
  }

  /// Blocking fallback: the sum is done when this returns.
  public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> CollectiveRequest {
    try allReduceSum(buffer)
    return .completed
  }

  public func test(_ request: CollectiveRequest) throws -> Bool {
    precondition(request == .completed, "this communicator never returns outstanding requests")
    return true
  }

  public func wait(_ request: CollectiveRequest) throws {
    precondition(request == .completed, "this communicator never returns outstanding requests")
  }

  /// Blocking fallback over `allGather`: every rank gathers all blocks and keeps the ones sent to it (size times
  /// the traffic of a real all-to-all; fine for the in-process worlds of the tests).
  public func startAllToAll(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws
    -> CollectiveRequest
  {
    precondition(send.count == receive.count && send.count % size == 0, "all-to-all blocks differ in size")
    let block = send.count / size
    var gathered = [UInt8](repeating: 0, count: send.count * size)
    try gathered.withUnsafeMutableBytes { try allGather(send, into: $0) }
    for source in 0..<size where block > 0 {
      let from = (source * size + rank) * block
      gathered.withUnsafeBytes { all in
        receive.baseAddress!.advanced(by: source * block).copyMemory(
          from: all.baseAddress!.advanced(by: from), byteCount: block)
      }
    }
    return .completed
  }

  public func startAllGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws
    -> CollectiveRequest
  {
    try allGather(send, into: receive)
    return .completed
  }

  public func splitByHost() throws -> Communicator { self }

  public func split(color: Int, key: Int) throws -> Communicator {
    guard size == 1 else {
      throw CommunicationError(operation: "split", message: "this communicator cannot split a world of \(size)")
    }
    return self
  }

  /// No shared memory: callers fall back to the collectives above.
  public func allocateSharedMemory(byteCount: Int) throws -> SharedMemoryWindow? { nil }
  public func finalize() {}
}

/// An error from the communication layer, with the implementation's own explanation.
public struct CommunicationError: Error, CustomStringConvertible {
  public var operation: String
  public var message: String
  public init(operation: String, message: String) {
    self.operation = operation
    self.message = message
  }
  public var description: String { "\(operation) failed: \(message)" }
}
