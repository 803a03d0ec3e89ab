import CKernels
import Tensors

/// The hyperparameters of `SGD` (torch.optim.SGD with dampening 0, maximize false).
public struct SGDOptions: Codable, Equatable, Sendable {
  /// μ; 0 disables the momentum buffer.
  public var momentum: Double
  /// L2 penalty added to the gradient (coupled, as in torch.optim.SGD, not AdamW-style decoupled).
  public var weightDecay: Double
  /// Nesterov momentum; requires momentum > 0 (as in PyTorch).
  public var nesterov: Bool

  public init(momentum: Double = 0, weightDecay: Double = 0, nesterov: Bool = false) {
    self.momentum = momentum
    self.weightDecay = weightDecay
    self.nesterov = nesterov
  }
}

/// torch.optim.SGD (dampening 0, maximize false), element-wise over the flat buffer:
///   d = g + wd·w;  if μ ≠ 0 { v = μ·v + d  (v starts at 0, so v = d on the first step, bit-identical to
///   PyTorch's clone);  d = nesterov ? d + μ·v : v };  w = w − lr·d
/// All arithmetic in Float, one rounding per operation in PyTorch's order.
///
/// With `decay` leaving some tensors undecayed (`--no-bias-decay`), those runs of the buffer take wd = 0.
public final class SGD: Optimizer {
  public let options: SGDOptions
  /// v, count == parameterCount (zeros, and unused, when μ = 0); saved in checkpoints.
  public let momentumBuffer: FloatBuffer
  public let decay: WeightDecayCoverage
  public var stepCount = 0
  public var state: [OptimizerState] { [OptimizerState(suffix: "", buffer: momentumBuffer)] }

  public init(parameterCount: Int, options: SGDOptions, decay: WeightDecayCoverage? = nil) {
    checkMomentumSettings(
      momentum: options.momentum, weightDecay: options.weightDecay, nesterov: options.nesterov)
    self.options = options
    momentumBuffer = FloatBuffer(count: parameterCount)
    self.decay = decay ?? WeightDecayCoverage(parameterCount: parameterCount)
    precondition(self.decay.runs.last.map { $0.range.upperBound } ?? 0 == parameterCount)
  }

  /// One update of parameters[0..<parameterCount] from gradients[0..<parameterCount], in the C kernel built
  /// for the CPU's widest vectors (bit-identical on every CPU). Returns false when some gradient was NaN or ±Inf:
  /// the parameters then hold garbage and training has diverged (checked in the same pass, for free).
  @discardableResult
  public func step(
    parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, learningRate: Float
  ) -> Bool {
    stepCount += 1
    let (mu, v) = (Float(options.momentum), momentumBuffer.pointer)
    return decay.updateRuns { start, count, decayed in
      let (w, g, wd) = (parameters + start, gradients + start, decayed ? Float(options.weightDecay) : 0)
      return mu == 0
        ? ddp_sgd_plain_step(w, g, count, learningRate, wd)
        : ddp_sgd_momentum_step(w, g, v + start, count, learningRate, wd, mu, options.nesterov)
    }
  }

  /// `step` on the gradient first[i] + second[i] (rank order), added inside the same pass: the same bits as
  /// summing into a buffer and calling `step` on it.
  @discardableResult
  public func step(
    parameters: UnsafeMutablePointer<Float>, gradients first: UnsafePointer<Float>, plus second: UnsafePointer<Float>,
    learningRate: Float
  ) -> Bool {
    stepCount += 1
    let (mu, v) = (Float(options.momentum), momentumBuffer.pointer)
    return decay.updateRuns { start, count, decayed in
      let (w, g, g2, wd) = (parameters + start, first + start, second + start, decayed ? Float(options.weightDecay) : 0)
      return mu == 0
        ? ddp_sgd_plain_step2(w, g, g2, count, learningRate, wd)
        : ddp_sgd_momentum_step2(w, g, g2, v + start, count, learningRate, wd, mu, options.nesterov)
    }
  }
}
