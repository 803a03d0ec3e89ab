/// The median of `values` (the mean of the middle two for an even count); nil when empty.
public func median(_ values: [Double]) -> Double? {
  guard !values.isEmpty else { return nil }
  let sorted = values.sorted()
  let middle = sorted.count / 2
  return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/// One timed window of a training run: how many samples it processed (all ranks) in how many seconds.
public struct TimedWindow: Equatable, Sendable {
  public var samples: Int
  public var seconds: Double
  public init(samples: Int, seconds: Double) {
    self.samples = samples
    self.seconds = seconds
  }
  public var samplesPerSecond: Double { Double(samples) / seconds }
}

/// Samples/s of a run: the median over the windows after the first `warmup` ones (which are dropped).
public func medianThroughput(_ windows: [TimedWindow], warmup: Int) -> Double? {
  median(windows.dropFirst(warmup).map(\.samplesPerSecond))
}

/// GFLOP/s of `flops` floating-point operations done in `seconds`.
public func gigaflops(_ flops: Double, seconds: Double) -> Double {
  seconds > 0 ? flops / seconds * 1e-9 : 0
}
