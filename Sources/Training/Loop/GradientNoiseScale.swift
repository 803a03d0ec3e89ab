/// The "simple" gradient noise scale B_simple = tr(Σ)/|G|² (McCandlish et al. 2018, appendix A), estimated from
/// gradient norms at two batch sizes that data-parallel training measures for free: each rank's local batch
/// b_small = B·M and the global batch b_big = K·B·M.
///
///   E|g_b|² = |G|² + tr(Σ)/b, so with |g_small|² (averaged over ranks) and |g_big|²:
///   |G|² ≈ (b_big·|g_big|² − b_small·|g_small|²) / (b_big − b_small)
///   tr(Σ) ≈ (|g_small|² − |g_big|²) / (1/b_small − 1/b_big)
/// Each estimate is noisy (and can be negative), so both are smoothed (exponential moving average) before the
/// ratio is taken. Needs b_big > b_small, i.e. K > 1.
public struct GradientNoiseScale: Sendable {
  public let smallBatch: Int
  public let bigBatch: Int
  /// Weight of a new measurement in the moving averages.
  public let smoothing: Double
  public private(set) var gradientSquaredEstimate: Double?
  public private(set) var traceEstimate: Double?

  public init(smallBatch: Int, bigBatch: Int, smoothing: Double = 0.05) {
    precondition(bigBatch > smallBatch && smallBatch > 0)
    self.smallBatch = smallBatch
    self.bigBatch = bigBatch
    self.smoothing = smoothing
  }

  /// Unbiased single-step estimates (|G|², tr(Σ)) from the two squared norms.
  public func estimates(smallSquaredNorm: Double, bigSquaredNorm: Double) -> (gradientSquared: Double, trace: Double) {
    let small = Double(smallBatch)
    let big = Double(bigBatch)
    let gradientSquared = (big * bigSquaredNorm - small * smallSquaredNorm) / (big - small)
    let trace = (smallSquaredNorm - bigSquaredNorm) / (1 / small - 1 / big)
    return (gradientSquared, trace)
  }

  /// Adds one measurement to the moving averages.
  public mutating func add(smallSquaredNorm: Double, bigSquaredNorm: Double) {
    let (gradientSquared, trace) = estimates(smallSquaredNorm: smallSquaredNorm, bigSquaredNorm: bigSquaredNorm)
    guard gradientSquared.isFinite, trace.isFinite else { return }
    gradientSquaredEstimate = gradientSquaredEstimate.map { $0 + smoothing * (gradientSquared - $0) } ?? gradientSquared
    traceEstimate = traceEstimate.map { $0 + smoothing * (trace - $0) } ?? trace
  }

  /// tr(Σ)/|G|² from the smoothed estimates; nil until measured or while |G|² is not positive.
  public var simpleNoiseScale: Double? {
    guard let gradientSquared = gradientSquaredEstimate, let trace = traceEstimate, gradientSquared > 0 else {
      return nil
    }
    return trace / gradientSquared
  }
}
