import CKernels
import Foundation
import Tensors

/// The hyperparameters of `AdamW` and `LAMB`.
public struct AdamOptions: Codable, Equatable, Sendable {
  public var beta1: Double
  public var beta2: Double
  /// ε, added to the denominator.
  public var eps: Double
  /// Decoupled weight decay (AdamW's p ← p·(1 − lr·wd); LAMB's + wd·p in the update).
  public var weightDecay: Double

  public init(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.01) {
    self.beta1 = beta1
    self.beta2 = beta2
    self.eps = eps
    self.weightDecay = weightDecay
  }
}

/// torch.optim.AdamW (amsgrad off, maximize off), element-wise over the flat buffer, one pass per step. At step
/// t = 1, 2, ... with the scheduled lr:
///   w ← w·(1 − lr·wd);  m ← m + (1 − β1)·(g − m);  v ← v·β2 + (1 − β2)·g²
///   w ← w − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
/// The scalars are computed in double as PyTorch's Python code computes them and rounded to float, as its CPU
/// kernels take them (`ddp_adamw_scalars`); the arithmetic is float, one rounding per operation in PyTorch's order
/// (PyTorch's own vectorised kernels may fuse a multiply-add: agreement is to rounding, not bit for bit). m and v
/// (PyTorch's exp_avg and exp_avg_sq) start at 0 and are saved in checkpoints with the step count. Tensors that
/// `decay` leaves out (`--no-bias-decay`) take wd = 0.
public final class AdamW {
  public let options: AdamOptions
  /// m and v, in the parameters' layout.
  public let firstMoment: FloatBuffer
  public let secondMoment: FloatBuffer
  public let decay: WeightDecayCoverage
  public var stepCount = 0
  public var state: [OptimizerState] {
    [
      OptimizerState(suffix: "exp_avg", buffer: firstMoment),
      OptimizerState(suffix: "exp_avg_sq", buffer: secondMoment),
    ]
  }

  public init(parameterCount: Int, options: AdamOptions, decay: WeightDecayCoverage? = nil) {
    checkAdamSettings(beta1: options.beta1, beta2: options.beta2, eps: options.eps, weightDecay: options.weightDecay)
    self.options = options
    firstMoment = FloatBuffer(count: parameterCount)
    secondMoment = FloatBuffer(count: parameterCount)
    self.decay = decay ?? WeightDecayCoverage(parameterCount: parameterCount)
    precondition(self.decay.runs.last.map { $0.range.upperBound } ?? 0 == parameterCount)
  }

  /// Step t's scalars (t = `stepCount` after the increment), for a run with weight decay or without.
  private func scalars(learningRate: Float, decayed: Bool) -> ddp_adamw_scalars {
    let lr = Double(learningRate)
    let t = Double(stepCount)
    let wd = decayed ? options.weightDecay : 0
    return ddp_adamw_scalars(
      decay: Float(1 - lr * wd), beta1Complement: Float(1 - options.beta1), beta2: Float(options.beta2),
      beta2Complement: Float(1 - options.beta2), correction2Root: Float((1 - pow(options.beta2, t)).squareRoot()),
      eps: Float(options.eps), negativeStepSize: Float(-(lr / (1 - pow(options.beta1, t)))))
  }

  @discardableResult
  public func step(
    parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, learningRate: Float
  ) -> Bool {
    stepCount += 1
    let (m, v) = (firstMoment.pointer, secondMoment.pointer)
    return decay.updateRuns { start, count, decayed in
      var s = scalars(learningRate: learningRate, decayed: decayed)
      return ddp_adamw_step(parameters + start, gradients + start, m + start, v + start, count, &s)
    }
  }

  /// `step` on the gradient first[i] + second[i] (rank order), added inside the same pass.
  @discardableResult
  public func step(
    parameters: UnsafeMutablePointer<Float>, gradients first: UnsafePointer<Float>, plus second: UnsafePointer<Float>,
    learningRate: Float
  ) -> Bool {
    stepCount += 1
    let (m, v) = (firstMoment.pointer, secondMoment.pointer)
    return decay.updateRuns { start, count, decayed in
      var s = scalars(learningRate: learningRate, decayed: decayed)
      return ddp_adamw_step2(parameters + start, first + start, second + start, m + start, v + start, count, &s)
    }
  }
}
