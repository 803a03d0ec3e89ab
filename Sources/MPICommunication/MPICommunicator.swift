import CMPI
import Communication
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// `Communicator` over MPI_COMM_WORLD, or over a part of it (`split`, `splitByHost`). This module is the only code
/// in ddp-train that links MPI.
///
/// Errors are returned, not fatal (MPI_ERRORS_RETURN), and become `CommunicationError`s carrying
/// `MPI_Error_string`'s text. Collectives are called from one thread at a time (MPI_THREAD_FUNNELED is
/// enough); `abort` may be called from any thread (the watchdog), which Open MPI tolerates.
public final class MPICommunicator: Communicator {
  public let rank: Int
  public let size: Int
  /// The ranks this communicator spans: MPI_COMM_WORLD, or a communicator split from it.
  private let world: MPI_Comm
  /// Whether this is MPI_COMM_WORLD itself (only that one finalizes MPI).
  private let isWorld: Bool
  private var finalized = false
  /// Slots for outstanding non-blocking collectives (`CollectiveRequest.slot` indexes them); allocated once,
  /// so starting a request allocates nothing. A free slot holds MPI_REQUEST_NULL.
  private let requests: UnsafeMutablePointer<MPI_Request?>
  private var requestInUse: [Bool]
  /// The most non-blocking collectives outstanding at once.
  public static let maxOutstandingRequests = 64

  /// True when this process was started by mpirun/mpiexec (Open MPI or PMIx set these variables).
  public static var isLaunchedByMPI: Bool {
    let environment = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"]
    return environment.contains { getenv($0) != nil }
  }

  /// This process's rank as mpirun announced it, read before MPI_Init (for deciding who prints a usage error).
  public static var launchRank: Int {
    for name in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"] {
      if let value = getenv(name), let rank = Int(String(cString: value)) { return rank }
    }
    return 0
  }

  /// Open MPI's TCP transport (the one between hosts) sends a message of up to this many bytes at once; a larger
  /// one waits for a rendezvous round trip with the receiver first.
  static let tcpEagerLimitBytes = 1 << 20

  /// Raises the TCP transport's eager limit from Open MPI's 64 KiB to `tcpEagerLimitBytes`, unless the user set
  /// either limit (mpirun's `--mca`, or `OMPI_MCA_btl_tcp_eager_limit` / `..._rndv_eager_limit`). Every message a
  /// gradient exchange across hosts sends for the MLP (0.94 MB in all) then leaves at once, without waiting for a
  /// rendezvous that the receiver answers only when it next calls into MPI. Measured on two namespace hosts:
  /// fp32 with `--overlap-hosts` 24-34% more samples/s on 1 and 2.5 Gbit/s links, one all-reduce a step 42% more
  /// on the unlimited bridge, bf16 unchanged (BENCHMARKS.md, "Across hosts"). Costs a receiver a buffer of up to
  /// this size for a message that arrives before it is asked for. Within a host (shared memory) it changes
  /// nothing. Read by MPI_Init.
  static func sendEagerlyOverTCP() {
    let names = ["OMPI_MCA_btl_tcp_eager_limit", "OMPI_MCA_btl_tcp_rndv_eager_limit"]
    guard names.allSatisfy({ getenv($0) == nil }) else { return }
    for name in names { setenv(name, String(tcpEagerLimitBytes), 0) }
  }

  /// Initialises MPI. Call once per process.
  public convenience init() throws {
    // Waiting ranks yield the core instead of spinning (unless the user set it): on a host whose cores are
    // shared (other jobs, or ranks ≥ cores) a spinning rank starves the one it waits for; measured at K = 2 on a
    // busy 2-core host, 2-3x the throughput (BENCHMARKS.md). Read by MPI_Init, so set before it.
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0)
    Self.sendEagerlyOverTCP()
    var provided: Int32 = 0
    let code = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
    guard code == CMPI_SUCCESS() else {
      throw CommunicationError(operation: "MPI_Init_thread", message: Self.errorString(code))
    }
    self.init(communicator: CMPI_COMM_WORLD(), isWorld: true)
  }

  private init(communicator: MPI_Comm, isWorld: Bool) {
    world = communicator
    self.isWorld = isWorld
    MPI_Comm_set_errhandler(world, CMPI_ERRORS_RETURN())
    var rank: Int32 = 0
    var size: Int32 = 0
    MPI_Comm_rank(world, &rank)
    MPI_Comm_size(world, &size)
    self.rank = Int(rank)
    self.size = Int(size)
    requests = .allocate(capacity: Self.maxOutstandingRequests)
    requests.initialize(repeating: CMPI_REQUEST_NULL(), count: Self.maxOutstandingRequests)
    requestInUse = Array(repeating: false, count: Self.maxOutstandingRequests)
  }

  /// MPI_Comm_split_type(MPI_COMM_TYPE_SHARED): the ranks on this host, ranked as here.
  public func splitByHost() throws -> Communicator {
    var host: MPI_Comm?
    try check(CMPI_Comm_split_by_host(world, Int32(rank), &host), "MPI_Comm_split_type(shared)")
    return MPICommunicator(communicator: host!, isWorld: false)
  }

  /// MPI_Comm_split(color, key).
  public func split(color: Int, key: Int) throws -> Communicator {
    var part: MPI_Comm?
    try check(MPI_Comm_split(world, Int32(color), Int32(key), &part), "MPI_Comm_split")
    return MPICommunicator(communicator: part!, isWorld: false)
  }

  deinit {
    requests.deallocate()
  }

  /// Ends MPI cleanly; after this no collective may be called.
  public func finalize() {
    guard isWorld, !finalized else { return }
    finalized = true
    MPI_Finalize()
  }

  public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
    try allReduce(
      UnsafeMutableRawPointer(buffer.baseAddress), buffer.count, CMPI_FLOAT(), CMPI_SUM(),
      "MPI_Allreduce(sum, float)")
  }

  public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
    try allReduce(
      UnsafeMutableRawPointer(buffer.baseAddress), buffer.count, CMPI_DOUBLE(), CMPI_SUM(),
      "MPI_Allreduce(sum, double)")
  }

  public func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {
    try allReduce(
      UnsafeMutableRawPointer(buffer.baseAddress), buffer.count, CMPI_INT64(), CMPI_MAX(),
      "MPI_Allreduce(max, int64)")
  }

  public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
    guard buffer.count > 0 else { return }
    try check(
      MPI_Bcast(buffer.baseAddress, Int32(buffer.count), CMPI_BYTE(), Int32(root), world),
      "MPI_Bcast")
  }

  public func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws {
    precondition(receive.count == send.count * size, "all-gather buffers differ in size")
    precondition(send.count <= Int(Int32.max), "all-gather of more than 2^31-1 bytes")
    try check(
      MPI_Allgather(
        send.baseAddress, Int32(send.count), CMPI_BYTE(), receive.baseAddress, Int32(send.count), CMPI_BYTE(), world),
      "MPI_Allgather")
  }

  public func barrier() throws {
    try check(MPI_Barrier(world), "MPI_Barrier")
  }

  /// MPI_Iallreduce in place. Open MPI progresses it only inside MPI calls: call `test` between pieces of work.
  public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    -> CollectiveRequest
  {
    guard buffer.count > 0, size > 1 else { return .completed }
    precondition(buffer.count <= Int(Int32.max), "all-reduce of more than 2^31-1 elements")
    let slot = freeSlot()
    try check(
      CMPI_Iallreduce_sum_float_in_place(
        buffer.baseAddress, Int32(buffer.count), world, requests + slot),
      "MPI_Iallreduce(sum, float)")
    requestInUse[slot] = true
    return CollectiveRequest(slot: slot)
  }

  public func test(_ request: CollectiveRequest) throws -> Bool {
    guard request != .completed else { return true }
    precondition(requestInUse[request.slot], "test of a request that is not outstanding")
    var flag: Int32 = 0
    try check(CMPI_Test(requests + request.slot, &flag), "MPI_Test")
    if flag != 0 { requestInUse[request.slot] = false }
    return flag != 0
  }

  public func wait(_ request: CollectiveRequest) throws {
    guard request != .completed else { return }
    precondition(requestInUse[request.slot], "wait on a request that is not outstanding")
    defer { requestInUse[request.slot] = false }
    try check(CMPI_Wait(requests + request.slot), "MPI_Wait")
  }

  /// MPI_Ialltoall of bytes (equal blocks).
  public func startAllToAll(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws
    -> CollectiveRequest
  {
    precondition(send.count == receive.count && send.count % size == 0, "all-to-all blocks differ in size")
    let block = send.count / size
    precondition(block <= Int(Int32.max), "all-to-all blocks of more than 2^31-1 bytes")
    guard block > 0 else { return .completed }
    let slot = freeSlot()
    try check(
      MPI_Ialltoall(
        send.baseAddress, Int32(block), CMPI_BYTE(), receive.baseAddress, Int32(block), CMPI_BYTE(), world,
        requests + slot),
      "MPI_Ialltoall")
    requestInUse[slot] = true
    return CollectiveRequest(slot: slot)
  }

  /// MPI_Iallgather of bytes.
  public func startAllGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws
    -> CollectiveRequest
  {
    precondition(receive.count == send.count * size, "all-gather buffers differ in size")
    precondition(send.count <= Int(Int32.max), "all-gather of more than 2^31-1 bytes")
    guard send.count > 0 else { return .completed }
    let slot = freeSlot()
    try check(
      MPI_Iallgather(
        send.baseAddress, Int32(send.count), CMPI_BYTE(), receive.baseAddress, Int32(send.count), CMPI_BYTE(), world,
        requests + slot),
      "MPI_Iallgather")
    requestInUse[slot] = true
    return CollectiveRequest(slot: slot)
  }

  private func freeSlot() -> Int {
    guard let slot = requestInUse.firstIndex(of: false) else {
      preconditionFailure("more than \(Self.maxOutstandingRequests) outstanding non-blocking collectives")
    }
    return slot
  }

  /// An MPI-3 shared-memory window (`CMPI_Shared_window`) when every rank is on this host, else nil. The bytes
  /// start 64-byte aligned: the window's address is padded by the same amount on every rank (checked, since the
  /// ranks map the segment at different addresses).
  public func allocateSharedMemory(byteCount: Int) throws -> SharedMemoryWindow? {
    var base: UnsafeMutableRawPointer?
    var window: MPI_Win?
    try check(
      CMPI_Shared_window(world, MPI_Aint(byteCount + FloatAlignment.bytes), &base, &window),
      "MPI_Win_allocate_shared")
    let pad = base.map { (FloatAlignment.bytes - Int(bitPattern: $0) % FloatAlignment.bytes) % FloatAlignment.bytes }
    // -1: no window here. Everyone must agree on the padding (and on having a window) to share the bytes.
    var extremes: [Int64] = [Int64(pad ?? -1), -Int64(pad ?? -1)]
    try extremes.withUnsafeMutableBufferPointer { try allReduceMax($0) }
    guard let base, let window, let pad, extremes[0] == -extremes[1] else { return nil }
    return MPISharedWindow(base: base + pad, byteCount: byteCount, window: window, world: world)
  }

  /// How long `abort` lets MPI_Abort try before this process exits by itself.
  public static let abortGraceSeconds: UInt32 = 3

  /// MPI_Abort, bounded: it asks mpirun to end every rank, which needs every host's daemon to answer; a host whose
  /// link is gone never does, and MPI_Abort then never returns ("abort is already in progress"). So it runs on a
  /// thread of its own and this process exits with `code` after `abortGraceSeconds` whatever happened; mpirun
  /// then sees a rank gone, and its daemon keepalive (`ddp-train launch` sets it across hosts) ends the rest.
  public func abort(code: Int32) -> Never {
    fflush(nil)
    let aborter = Thread { MPI_Abort(CMPI_COMM_WORLD(), code) }
    aborter.name = "ddp-train MPI_Abort"
    aborter.start()
    sleep(Self.abortGraceSeconds)
    fflush(nil)
    _exit(code)
  }

  // MARK: - Helpers

  private func allReduce(
    _ pointer: UnsafeMutableRawPointer?, _ count: Int, _ type: MPI_Datatype, _ op: MPI_Op,
    _ name: String
  ) throws {
    guard count > 0 else { return }
    precondition(count <= Int(Int32.max), "all-reduce of more than 2^31-1 elements")
    try check(MPI_Allreduce(CMPI_IN_PLACE(), pointer, Int32(count), type, op, world), name)
  }

  private func check(_ code: Int32, _ operation: String) throws {
    guard code != CMPI_SUCCESS() else { return }
    throw CommunicationError(operation: operation, message: Self.errorString(code))
  }

  static func errorString(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: Int(CMPI_MAX_ERROR_STRING()) + 1)
    var length: Int32 = 0
    MPI_Error_string(code, &buffer, &length)
    return String(cString: buffer)
  }
}

/// The alignment `SharedMemoryWindow.base` promises (one cache line).
enum FloatAlignment {
  static let bytes = 64
}

/// An MPI-3 shared window (see `MPICommunicator.allocateSharedMemory`).
final class MPISharedWindow: SharedMemoryWindow {
  let base: UnsafeMutableRawPointer
  let byteCount: Int
  private let window: MPI_Win
  private let world: MPI_Comm

  init(base: UnsafeMutableRawPointer, byteCount: Int, window: MPI_Win, world: MPI_Comm) {
    self.base = base
    self.byteCount = byteCount
    self.window = window
    self.world = world
  }

  func synchronize() throws {
    let code = CMPI_Shared_synchronize(window, world)
    guard code == CMPI_SUCCESS() else {
      throw CommunicationError(operation: "MPI_Barrier (shared window)", message: MPICommunicator.errorString(code))
    }
  }
}
