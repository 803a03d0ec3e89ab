import Dispatch

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
