import CKernels
import Foundation
import Layers
import Tensors

/// LAMB (You et al. 2019) with the arithmetic of NVIDIA apex's FusedLAMB at its defaults (AdamW mode, bias
/// correction, gradient averaging, max_grad_norm = 1, use_nvlamb off). At step t = 1, 2, ... with the scheduled lr:
///   c = ‖g‖/max_grad_norm when the global gradient norm ‖g‖ (over every tensor) exceeds max_grad_norm, else 1
///   per tensor, with s = g/c:  m ← m·β1 + (1 − β1)·s;  v ← v·β2 + (1 − β2)·s²
///                              u = (m/(1 − β1^t)) / (√(v/(1 − β2^t)) + ε) + wd·w
///   w ← w − r·u,  r = lr·‖w‖/‖u‖ for a tensor with wd ≠ 0 (lr when either norm is 0), r = lr where wd = 0
/// As apex computes them, 1 − β1, 1 − β2 and the trust ratio are float arithmetic, the bias corrections double
/// rounded to float; the norms here accumulate in double (apex's in float). Two passes per tensor (the update and
/// its norms, then the subtraction) after one over the whole gradient for its norm; u lives in a scratch buffer
/// allocated once. m and v (exp_avg, exp_avg_sq) are saved in checkpoints with the step count.
public final class LAMB: Optimizer {
  public let options: AdamOptions
  public static let maxGradientNorm: Float = 1
  public let firstMoment: FloatBuffer
  public let secondMoment: FloatBuffer
  /// The parameter tensors (`Sequential.views`), each with its own trust ratio.
  public let tensors: [ParameterView]
  /// Whether biases and batch-norm parameters (rank 1) take weight decay, and with it the trust ratio.
  public let decaysBiases: Bool
  public var stepCount = 0
  /// r/lr of the last step, one per tensor (1 where no trust ratio applies); for tests and diagnostics.
  public private(set) var lastTrustRatios: [Double]
  private let update: FloatBuffer
  public var state: [OptimizerState] {
    [
      OptimizerState(suffix: "exp_avg", buffer: firstMoment),
      OptimizerState(suffix: "exp_avg_sq", buffer: secondMoment),
    ]
  }

  /// `tensors` must tile 0..<parameterCount in order (Sequential.views does).
  public init(parameterCount: Int, tensors: [ParameterView], options: AdamOptions, decaysBiases: Bool = true) {
    checkAdamSettings(beta1: options.beta1, beta2: options.beta2, eps: options.eps, weightDecay: options.weightDecay)
    precondition(tensors.reduce(0) { $0 + $1.count } == parameterCount, "tensors must cover every parameter once")
    self.options = options
    self.tensors = tensors
    self.decaysBiases = decaysBiases
    firstMoment = FloatBuffer(count: parameterCount)
    secondMoment = FloatBuffer(count: parameterCount)
    update = FloatBuffer(count: parameterCount)
    lastTrustRatios = Array(repeating: 1, count: tensors.count)
  }

  @discardableResult
  public func step(
    parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, learningRate: Float
  ) -> Bool {
    stepCount += 1
    var finite = true
    let gradientNorm = Float(ddp_sum_of_squares(gradients, update.count, &finite).squareRoot())
    let (beta1, beta2) = (Float(options.beta1), Float(options.beta2))
    let t = Double(stepCount)
    var s = ddp_lamb_scalars(
      clip: gradientNorm > Self.maxGradientNorm ? gradientNorm / Self.maxGradientNorm : 1, beta1: beta1,
      beta3: 1 - beta1, beta2: beta2, beta2Complement: 1 - beta2,
      correction1: Float(1 - pow(Double(beta1), t)), correction2: Float(1 - pow(Double(beta2), t)),
      eps: Float(options.eps), wd: 0)
    var norms: (Double, Double) = (0, 0)
    for (index, view) in tensors.enumerated() {
      let decayed = WeightDecayCoverage.decays(view, biases: decaysBiases) && options.weightDecay != 0
      s.wd = decayed ? Float(options.weightDecay) : 0
      let (o, n) = (view.offset, view.count)
      withUnsafeMutablePointer(to: &norms) {
        $0.withMemoryRebound(to: Double.self, capacity: 2) { sums in
          ddp_lamb_update(
            update.pointer + o, parameters + o, gradients + o, firstMoment.pointer + o, secondMoment.pointer + o, n,
            &s, sums)
        }
      }
      var ratio = learningRate
      lastTrustRatios[index] = 1
      if decayed {
        let (weightNorm, updateNorm) = (Float(norms.0.squareRoot()), Float(norms.1.squareRoot()))
        if weightNorm != 0 && updateNorm != 0 {
          ratio = learningRate * (weightNorm / updateNorm)
          lastTrustRatios[index] = Double(weightNorm / updateNorm)
        }
      }
      ddp_scaled_subtract(parameters + o, update.pointer + o, n, ratio)
    }
    return finite
  }
}
