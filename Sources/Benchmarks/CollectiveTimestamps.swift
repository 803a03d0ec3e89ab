import GradientExchange

#if canImport(Glibc)
  import Glibc
#endif

/// When this rank entered and left each step's gradient collective: CLOCK_MONOTONIC nanoseconds, one clock for
/// every process of a host, so ranks' readings compare (`CollectiveSkew`). Filled as the run's `Reduction` tells
/// it of each step's collective; storage is allocated here, once, so recording allocates nothing in the step.
package final class CollectiveTimestamps: CollectiveObserver {
  /// entries[t], exits[t] for steps t < capacity; 0 where the step did not run.
  package private(set) var entries: [UInt64]
  package private(set) var exits: [UInt64]

  package init(steps: Int) {
    entries = Array(repeating: 0, count: steps)
    exits = Array(repeating: 0, count: steps)
  }

  /// The monotonic clock now, in nanoseconds.
  package static func now() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
  }

  package func entering(step: Int) {
    if step < entries.count { entries[step] = Self.now() }
  }

  package func left(step: Int) {
    if step < exits.count { exits[step] = Self.now() }
  }
}
