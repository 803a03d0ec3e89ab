import Tensors

/// An update rule over the flat parameter buffer. The trainer calls `step` once per optimizer step with the
/// all-reduced mean gradient; `momentumBuffer` is what a checkpoint must save to continue bit for bit.
public protocol Optimizer: AnyObject {
  /// The per-parameter state (SGD's and LARS's momentum buffer), same layout as the parameters.
  var momentumBuffer: FloatBuffer { get }
  /// Applies one update; returns false when some gradient was NaN or ±Inf (training has diverged and the
  /// parameters are no longer usable). Checking inside the update saves the trainer a pass over the gradient.
  @discardableResult
  func step(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, learningRate: Float) -> Bool
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

/// The settings SGD and LARS share, checked the same way: momentum and weight decay finite and ≥ 0, Nesterov only
/// with momentum. (The CLI rejects bad values with a message first; this guards other callers.)
func checkMomentumSettings(momentum: Double, weightDecay: Double, nesterov: Bool) {
  precondition(momentum >= 0 && momentum.isFinite, "momentum must be >= 0, got \(momentum)")
  precondition(weightDecay >= 0 && weightDecay.isFinite, "weight decay must be >= 0")
  precondition(!nesterov || momentum > 0, "Nesterov momentum requires momentum > 0")
}
