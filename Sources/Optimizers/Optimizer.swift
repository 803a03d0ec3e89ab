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

extension SGD: Optimizer {}
