import Tensors

/// An update rule over the flat parameter buffer. The trainer calls `step` once per optimizer step with the
/// all-reduced mean gradient; `state` is what a checkpoint must save to continue bit for bit.
public protocol Optimizer: AnyObject {
  /// The per-parameter state (SGD's and LARS's momentum buffer), same layout as the parameters.
  var momentumBuffer: FloatBuffer { get }
  func step(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, learningRate: Float)
}

extension SGD: Optimizer {}
