import Layers
import Tensors

/// The hyperparameters of `LARS`.
public struct LARSOptions: Codable, Equatable, Sendable {
  /// μ; 0 disables the momentum buffer.
  public var momentum: Double
  /// wd: L2 penalty added to the gradient (coupled, as in `SGD`), and the wd of the trust ratio.
  public var weightDecay: Double
  /// tr, the trust coefficient (You et al. 2017 use 0.001).
  public var trustCoefficient: Double
  /// Nesterov momentum; requires momentum > 0.
  public var nesterov: Bool

  public init(
    momentum: Double = 0, weightDecay: Double = 0, trustCoefficient: Double = 0.001,
    nesterov: Bool = false
  ) {
    self.momentum = momentum
    self.weightDecay = weightDecay
    self.trustCoefficient = trustCoefficient
    self.nesterov = nesterov
  }
}

/// Layer-wise Adaptive Rate Scaling (You, Gitman, Ginsburg 2017), momentum on top of the scaled update.
///
/// For each weight matrix l (a view of rank ≥ 2), with norms over the whole layer:
///   d = g + wd·w;  η_l = tr·‖w‖ / (‖g‖ + wd·‖w‖)  (1 when ‖w‖ = 0 or ‖g‖ = 0, as in common implementations);
///   v = μ·v + η_l·d;  w = w − lr·(nesterov ? η_l·d + μ·v : v)
/// Biases (rank-1 views) are excluded as is usual: they get exactly `SGD`'s update with the same lr, μ and wd.
/// So the global lr sets each layer's step as a fraction of its norm: ‖Δw‖ ≈ lr·tr·‖w‖ before momentum.
/// The momentum buffer has the parameters' layout (saved in checkpoints like SGD's). Arithmetic in Float,
/// norms accumulated in Double.
public final class LARS: Optimizer {
  public let options: LARSOptions
  /// v, count == parameterCount; saved in checkpoints.
  public let momentumBuffer: FloatBuffer
  /// The parameter tensors, each adapted (weights) or not (biases).
  public let layers: [ParameterView]
  /// η_l of the last step, one per entry of `layers` (1 for biases); for tests and diagnostics.
  public private(set) var lastTrustRatios: [Double]
  /// Whether biases (rank-1 tensors) take weight decay (`--bias-decay`); weight tensors always do.
  public let decaysBiases: Bool
  public var stepCount = 0
  public var state: [OptimizerState] { [OptimizerState(suffix: "", buffer: momentumBuffer)] }

  /// `layers` must tile 0..<parameterCount without overlap (Sequential.views does).
  public init(parameterCount: Int, layers: [ParameterView], options: LARSOptions, decaysBiases: Bool = true) {
    checkMomentumSettings(
      momentum: options.momentum, weightDecay: options.weightDecay, nesterov: options.nesterov)
    precondition(
      options.trustCoefficient > 0 && options.trustCoefficient.isFinite,
      "trust coefficient must be > 0")
    precondition(
      layers.reduce(0) { $0 + $1.count } == parameterCount, "layers must cover every parameter once"
    )
    self.options = options
    self.layers = layers
    self.decaysBiases = decaysBiases
    momentumBuffer = FloatBuffer(count: parameterCount)
    lastTrustRatios = Array(repeating: 1, count: layers.count)
  }

  /// Whether `view` gets the trust ratio: weight matrices yes, biases (rank 1) no.
  public static func isAdapted(_ view: ParameterView) -> Bool { view.shape.count >= 2 }

  /// η_l = tr·‖w‖/(‖g‖ + wd·‖w‖), or 1 when either norm is 0.
  public static func trustRatio(
    weightNorm: Double, gradientNorm: Double, trustCoefficient: Double, weightDecay: Double
  ) -> Double {
    guard weightNorm > 0, gradientNorm > 0 else { return 1 }
    return trustCoefficient * weightNorm / (gradientNorm + weightDecay * weightNorm)
  }

  /// One update; returns false (and leaves the parameters unusable) when some gradient is NaN or ±Inf.
  @discardableResult
  public func step(
    parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, learningRate: Float
  ) -> Bool {
    stepCount += 1
    let finite = Elementwise.allFinite(gradients, count: momentumBuffer.count)
    for (index, view) in layers.enumerated() {
      let w = parameters + view.offset
      let g = gradients + view.offset
      var ratio = 1.0
      if Self.isAdapted(view) {
        ratio = Self.trustRatio(
          weightNorm: Self.norm(UnsafePointer(w), count: view.count),
          gradientNorm: Self.norm(g, count: view.count),
          trustCoefficient: options.trustCoefficient, weightDecay: options.weightDecay)
      }
      lastTrustRatios[index] = ratio
      update(
        w, g, momentumBuffer.pointer + view.offset, count: view.count, scale: Float(ratio),
        lr: learningRate, wd: WeightDecayCoverage.decays(view, biases: decaysBiases) ? Float(options.weightDecay) : 0)
    }
    return finite
  }

  /// v = μ·v + s·d, w −= lr·v (or the Nesterov form) over one tensor; s = 1 is SGD's update.
  private func update(
    _ w: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ v: UnsafeMutablePointer<Float>,
    count: Int,
    scale s: Float, lr: Float, wd: Float
  ) {
    let mu = Float(options.momentum)
    var i = 0
    switch (mu != 0, options.nesterov) {
    case (false, _):
      while i < count {
        w[i] = w[i] - lr * (s * (g[i] + wd * w[i]))
        i = i &+ 1
      }
    case (true, false):
      while i < count {
        let velocity = mu * v[i] + s * (g[i] + wd * w[i])
        v[i] = velocity
        w[i] = w[i] - lr * velocity
        i = i &+ 1
      }
    case (true, true):
      while i < count {
        let d = s * (g[i] + wd * w[i])
        let velocity = mu * v[i] + d
        v[i] = velocity
        w[i] = w[i] - lr * (d + mu * velocity)
        i = i &+ 1
      }
    }
  }

  static func norm(_ values: UnsafePointer<Float>, count: Int) -> Double {
    Elementwise.sumOfSquares(values, count: count).squareRoot()
  }
}
