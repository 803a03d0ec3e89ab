import Dispatch

#if canImport(Glibc)
  import Glibc
#endif

/// Where a rank's step time goes, summed over an epoch (seconds).
struct StepTimes {
  /// Gathering and scaling the batch.
  var data = 0.0
  /// Forward and backward.
  var compute = 0.0
  /// The gradient all-reduce: the exposed communication, including waiting for slower ranks.
  var allReduce = 0.0
  /// Checks, the optimizer and bookkeeping.
  var other = 0.0
}

/// A monotonic stopwatch: `lap()` returns the seconds since the last lap (or creation).
struct Clock {
  private var last = DispatchTime.now().uptimeNanoseconds
  mutating func lap() -> Double {
    let now = DispatchTime.now().uptimeNanoseconds
    defer { last = now }
    return Double(now - last) * 1e-9
  }
}

/// When this rank entered and left each step's gradient collective: CLOCK_MONOTONIC nanoseconds, one clock for
/// every process of a host, so ranks' readings compare (`CollectiveSkew`). Filled by `Trainer.run` when set;
/// storage is allocated here, once, so recording allocates nothing in the step.
public final class CollectiveTimestamps {
  /// entries[t], exits[t] for steps t < capacity; 0 where the step did not run.
  public private(set) var entries: [UInt64]
  public private(set) var exits: [UInt64]

  public init(steps: Int) {
    entries = Array(repeating: 0, count: steps)
    exits = Array(repeating: 0, count: steps)
  }

  /// The monotonic clock now, in nanoseconds.
  public static func now() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
  }

  func record(step: Int, entry: UInt64, exit: UInt64) {
    guard step < entries.count else { return }
    entries[step] = entry
    exits[step] = exit
  }
}
