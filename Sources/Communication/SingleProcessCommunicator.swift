#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A world of one: rank 0 of size 1. Every collective leaves the buffers as they are.
public final class SingleProcessCommunicator: Communicator {
  public init() {}
  public var rank: Int { 0 }
  public var size: Int { 1 }
  public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
  public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
  public func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {}
  public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
    precondition(root == 0, "a world of one has only rank 0")
  }
  public func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws {
    precondition(receive.count == send.count, "all-gather buffers differ in size")
    if let source = send.baseAddress, let target = receive.baseAddress {
      target.copyMemory(from: source, byteCount: send.count)
    }
  }
  public func barrier() throws {}
  public func abort(code: Int32) -> Never { exit(code) }
}
