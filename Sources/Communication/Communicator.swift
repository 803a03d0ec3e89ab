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
