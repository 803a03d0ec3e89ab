import Foundation

/// K ranks as K threads of one process, for in-process multi-rank tests of the trainer (no MPI).
///
/// Collectives meet at a reusable barrier. An all-reduce sums the ranks' buffers in rank order (0, 1, ..., K−1)
/// on every rank, so results are deterministic and identical everywhere. `hosts` pretends the threads run on
/// several hosts (rank r on host `hosts[r]`): `splitByHost` groups them so, and a group that spans hosts has no
/// shared memory, as with MPI on real hosts.
public final class ThreadGroup: @unchecked Sendable {
  public let size: Int
  /// The host of each rank.
  public let hosts: [Int]
  private let condition = NSCondition()
  private var arrived = 0
  private var generation = 0
  /// Each rank's buffer address during a collective; valid between the collective's two barriers.
  private var slots: [UnsafeMutableRawPointer?]

  public init(size: Int, hosts: [Int]? = nil) {
    precondition(size >= 1 && (hosts == nil || hosts!.count == size))
    self.size = size
    self.hosts = hosts ?? Array(repeating: 0, count: size)
    slots = Array(repeating: nil, count: size)
  }

  /// Runs `body(communicator)` on `size` threads, one per rank, and waits for all; rethrows the first error.
  public func run(_ body: @escaping @Sendable (Communicator) throws -> Void) throws {
    let errors = ErrorBox(size: size)
    let group = DispatchGroup()
    for rank in 0..<size {
      let thread = Thread { [self] in
        do { try body(ThreadGroupCommunicator(group: self, rank: rank)) } catch { errors.set(rank, error) }
        group.leave()
      }
      thread.stackSize = 8 << 20
      group.enter()
      thread.start()
    }
    group.wait()
    if let error = errors.first { throw error }
  }

  /// How long a rank waits at a barrier before the process stops: ranks that disagree on their collectives
  /// (a bug under test) end the test run with a message instead of hanging it. No test step takes this long.
  public static let barrierTimeoutSeconds = 120.0

  func barrier() {
    condition.lock()
    let myGeneration = generation
    arrived += 1
    if arrived == size {
      arrived = 0
      generation += 1
      condition.broadcast()
    } else {
      let deadline = Date(timeIntervalSinceNow: Self.barrierTimeoutSeconds)
      while generation == myGeneration {
        if !condition.wait(until: deadline) && generation == myGeneration {
          fatalError(
            "ThreadGroup: \(arrived) of \(size) ranks waited \(Self.barrierTimeoutSeconds) s at a barrier; "
              + "the others never came (the ranks disagree on their collectives)")
        }
      }
    }
    condition.unlock()
  }

  /// Publishes `pointer` for `rank`, waits for everyone, runs `combine` with all ranks' pointers, waits again.
  func exchange(rank: Int, _ pointer: UnsafeMutableRawPointer?, _ combine: ([UnsafeMutableRawPointer?]) -> Void) {
    condition.lock()
    slots[rank] = pointer
    condition.unlock()
    barrier()
    condition.lock()
    let all = slots
    condition.unlock()
    combine(all)
    barrier()
  }

  private final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [Error?]
    init(size: Int) { errors = Array(repeating: nil, count: size) }
    func set(_ rank: Int, _ error: Error) { lock.withLock { errors[rank] = error } }
    var first: Error? { lock.withLock { errors.compactMap { $0 }.first } }
  }
}

/// One rank's view of a `ThreadGroup`.
public final class ThreadGroupCommunicator: Communicator {
  public let rank: Int
  public var size: Int { group.size }
  let group: ThreadGroup

  init(group: ThreadGroup, rank: Int) {
    self.group = group
    self.rank = rank
  }

  private func reduce<T>(_ buffer: UnsafeMutableBufferPointer<T>, _ combine: (T, T) -> T) {
    let count = buffer.count
    let result = UnsafeMutableBufferPointer<T>.allocate(capacity: max(count, 1))
    defer { result.deallocate() }
    group.exchange(rank: rank, UnsafeMutableRawPointer(buffer.baseAddress)) { all in
      // Everyone reads the others' inputs, in rank order, before anyone writes (the second barrier).
      for index in 0..<count {
        var value = all[0]!.assumingMemoryBound(to: T.self)[index]
        for other in 1..<all.count { value = combine(value, all[other]!.assumingMemoryBound(to: T.self)[index]) }
        result[index] = value
      }
    }
    // Safe to write now: every rank finished reading inside `exchange`, before its second barrier.
    for index in 0..<count { buffer[index] = result[index] }
  }

  public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { reduce(buffer, +) }
  public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws { reduce(buffer, +) }
  public func allReduceMax(_ buffer: UnsafeMutableBufferPointer<Int64>) throws { reduce(buffer, max) }

  public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
    let count = buffer.count
    group.exchange(rank: rank, buffer.baseAddress) { all in
      if rank != root, count > 0 { buffer.baseAddress!.copyMemory(from: all[root]!, byteCount: count) }
    }
  }

  public func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws {
    let count = send.count
    precondition(receive.count == count * size, "all-gather buffers differ in size")
    group.exchange(rank: rank, UnsafeMutableRawPointer(mutating: send.baseAddress)) { all in
      for other in all.indices where count > 0 {
        (receive.baseAddress! + other * count).copyMemory(from: all[other]!, byteCount: count)
      }
    }
  }

  public func barrier() throws { group.barrier() }

  public func splitByHost() throws -> Communicator { try split(color: group.hosts[rank], key: rank) }

  /// A new group for each color; the first member (by key, then rank) makes it and hands it to the others.
  public func split(color: Int, key: Int) throws -> Communicator {
    var pair = [Int64(color), Int64(key)]
    var all = [Int64](repeating: 0, count: 2 * size)
    try pair.withUnsafeMutableBytes { send in
      try all.withUnsafeMutableBytes { try allGather(UnsafeRawBufferPointer(send), into: $0) }
    }
    let members = (0..<size).filter { all[2 * $0] == Int64(color) }.sorted {
      (all[2 * $0 + 1], $0) < (all[2 * $1 + 1], $1)
    }
    let made = members.first == rank ? ThreadGroup(size: members.count, hosts: members.map { group.hosts[$0] }) : nil
    var subgroup: ThreadGroup?
    withExtendedLifetime(made) {
      group.exchange(rank: rank, made.map { Unmanaged.passUnretained($0).toOpaque() }) { pointers in
        subgroup = Unmanaged<ThreadGroup>.fromOpaque(pointers[members[0]]!).takeUnretainedValue()
      }
    }
    return ThreadGroupCommunicator(group: subgroup!, rank: members.firstIndex(of: rank)!)
  }

  /// Threads share the process's memory: rank 0 allocates, every rank gets its address. The group's barrier
  /// (a lock) orders the threads' stores and loads. A group spanning pretend hosts has none (as MPI's).
  public func allocateSharedMemory(byteCount: Int) throws -> SharedMemoryWindow? {
    guard Set(group.hosts).count == 1 else { return nil }
    let mine = rank == 0 ? ThreadGroupWindow(group: group, byteCount: byteCount) : nil
    var shared: ThreadGroupWindow?
    group.exchange(rank: rank, mine.map { Unmanaged.passUnretained($0).toOpaque() }) { all in
      shared = Unmanaged<ThreadGroupWindow>.fromOpaque(all[0]!).takeUnretainedValue()
    }
    return shared
  }

  public func abort(code: Int32) -> Never {
    fatalError("ThreadGroupCommunicator.abort(code: \(code)) on rank \(rank)")
  }
}

/// `ThreadGroupCommunicator`'s shared memory: one allocation, freed when the last rank drops it.
final class ThreadGroupWindow: SharedMemoryWindow {
  let base: UnsafeMutableRawPointer
  let byteCount: Int
  private let group: ThreadGroup

  init(group: ThreadGroup, byteCount: Int) {
    self.group = group
    self.byteCount = byteCount
    base = .allocate(byteCount: max(byteCount, 1), alignment: 64)
    base.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
  }

  deinit { base.deallocate() }

  func synchronize() throws { group.barrier() }
}
