import Layers
import Tensors

/// An update rule over the flat parameter buffer. The trainer calls `step` once per optimizer step with the
/// all-reduced mean gradient; `state` and `stepCount` are what a checkpoint must save to continue bit for bit.
public protocol Optimizer: AnyObject {
  /// The per-parameter state, each buffer in the parameters' layout (`OptimizerState`).
  var state: [OptimizerState] { get }
  /// Steps taken so far: Adam's and LAMB's bias correction uses it; SGD and LARS only count.
  var stepCount: Int { get set }
  /// Applies one update; returns false when some gradient was NaN or ±Inf (training has diverged and the
  /// parameters are no longer usable). Checking inside the update saves the trainer a pass over the gradient.
  @discardableResult
  func step(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, learningRate: Float) -> Bool
}

/// One buffer of an optimizer's state, in the parameters' layout. A checkpoint saves tensor `<name>.<suffix>` for
/// each parameter tensor `<name>` (PyTorch's names: `exp_avg`, `exp_avg_sq`), or `<name>` itself when the suffix is
/// empty (SGD's and LARS's momentum buffer, as ddp-train has always saved it).
public struct OptimizerState {
  public let suffix: String
  public let buffer: FloatBuffer

  public init(suffix: String, buffer: FloatBuffer) {
    self.suffix = suffix
    self.buffer = buffer
  }
}

/// An optimizer that can add two ranks' gradients inside its own pass over them (what `SharedMemoryPairReducer`
/// leaves it: one pass fewer over the gradient each step). Bit for bit `step` on the buffer of first[i] + second[i].
public protocol TwoAddendOptimizer: Optimizer {
  @discardableResult
  func step(
    parameters: UnsafeMutablePointer<Float>, gradients first: UnsafePointer<Float>, plus second: UnsafePointer<Float>,
    learningRate: Float
  ) -> Bool
}

extension SGD: TwoAddendOptimizer {}
extension AdamW: TwoAddendOptimizer {}

/// Which parameter tensors take weight decay (`--bias-decay`): every one, or only the weights of convolutions and
/// linear layers (rank ≥ 2), not biases and batch-norm γ and β (rank 1), as Goyal et al. (2017) do.
public struct WeightDecayCoverage: Sendable, Equatable {
  /// Adjacent runs of the flat buffer with the same choice, in order, covering it once.
  public let runs: [(range: Range<Int>, decayed: Bool)]

  /// Every parameter decayed: one run.
  public init(parameterCount: Int) { runs = [(0..<parameterCount, true)] }

  /// `views` tile the buffer in order (`Sequential.views`); `biases` false leaves rank-1 tensors undecayed.
  public init(views: [ParameterView], biases: Bool) {
    var runs: [(range: Range<Int>, decayed: Bool)] = []
    for view in views {
      let decayed = Self.decays(view, biases: biases)
      if let last = runs.last, last.decayed == decayed, last.range.upperBound == view.offset {
        runs[runs.count - 1].range = last.range.lowerBound..<(view.offset + view.count)
      } else {
        runs.append((view.offset..<(view.offset + view.count), decayed))
      }
    }
    self.runs = runs
  }

  /// Whether `view` takes weight decay.
  public static func decays(_ view: ParameterView, biases: Bool) -> Bool { biases || view.shape.count >= 2 }

  /// Calls `update(start, count, decayed)` for each run in order; true when every call returned true (an update
  /// kernel's "every gradient was finite").
  func updateRuns(_ update: (_ start: Int, _ count: Int, _ decayed: Bool) -> Bool) -> Bool {
    var finite = true
    for (range, decayed) in runs { finite = update(range.lowerBound, range.count, decayed) && finite }
    return finite
  }

  public static func == (a: Self, b: Self) -> Bool {
    a.runs.count == b.runs.count && zip(a.runs, b.runs).allSatisfy { $0.range == $1.range && $0.decayed == $1.decayed }
  }
}

/// The settings SGD and LARS share, checked the same way: momentum and weight decay finite and ≥ 0, Nesterov only
/// with momentum. (The CLI rejects bad values with a message first; this guards other callers.)
func checkMomentumSettings(momentum: Double, weightDecay: Double, nesterov: Bool) {
  precondition(momentum >= 0 && momentum.isFinite, "momentum must be >= 0, got \(momentum)")
  precondition(weightDecay >= 0 && weightDecay.isFinite, "weight decay must be >= 0")
  precondition(!nesterov || momentum > 0, "Nesterov momentum requires momentum > 0")
}

/// Adam's and LAMB's settings, checked the same way: β1, β2 in [0, 1), ε > 0, weight decay ≥ 0.
func checkAdamSettings(beta1: Double, beta2: Double, eps: Double, weightDecay: Double) {
  precondition(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "betas must be in [0, 1)")
  precondition(eps > 0 && eps.isFinite, "eps must be > 0")
  precondition(weightDecay >= 0 && weightDecay.isFinite, "weight decay must be >= 0")
}
