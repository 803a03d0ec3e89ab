import Tensors

/// nn.ReLU: y = max(x, 0), elementwise, in place over its input (any shape).
///
/// After a Linear or Conv2d the rectifier is applied by that layer in its bias pass (`Sequential` arranges it), and
/// this layer's forward has nothing left to do; before a MaxPool2d, the pooling's backward applies the mask, and this
/// layer's backward has nothing left to do. Otherwise its backward masks the gradient in place.
public final class ReLU: Layer {
  public let inputShape: [Int]
  /// False when the layer before applies the rectifier itself.
  var appliesForward = true
  /// False when the MaxPool2d after applies the backward's mask itself (`MaxPool2d.rectifiesInputGradient`).
  var appliesBackward = true

  public init(inputShape: [Int]) { self.inputShape = inputShape }

  public var outputShape: [Int] { inputShape }
  public var storage: LayerStorage { .inPlace }
  public var parameterShapes: [(suffix: String, shape: [Int])] { [] }
  public var torchExpression: String { "torch.nn.ReLU()" }
  public func bind(
    parameters: UnsafeMutablePointer<Float>?, gradients: UnsafeMutablePointer<Float>?, offset: Int, index: Int
  ) {}
  public func initializeParameters(using generator: inout Xoshiro256) {}

  public func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
    guard appliesForward else { return }
    Self.forward(x: x, y: y, count: batch * inputCount)
    StepProfile.current?.lap(.elementwise)
  }

  /// dx = y > 0 ? dy : 0 (dx == dy: in place).
  public func backward(
    x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, rangeElements: Int, gradientsReady: (Range<Int>) -> Void
  ) {
    guard let dx, appliesBackward else { return }
    Self.backward(y: y, dy: dy, dx: dx, count: batch * inputCount)
    StepProfile.current?.lap(.elementwise)
  }
}

/// The rectifier's kernels, with the bias add fused in where it follows a GEMM.
extension ReLU {
  /// y[i] = max(x[i], 0) for i in 0..<count; y may equal x (in place).
  @inline(__always)
  public static func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i < count {
      let v = x[i]
      y[i] = v > 0 ? v : 0
      i = i &+ 1
    }
  }

  /// y[r, c] = max(y[r, c] + bias[c], 0), in place: y is [batch, features] (a GEMM's output), bias [features].
  @inline(__always)
  public static func addBiasForward(
    bias: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, batch: Int, features: Int
  ) {
    var r = 0
    var row = y
    while r < batch {
      var c = 0
      while c < features {
        let v = row[c] + bias[c]
        row[c] = v > 0 ? v : 0
        c = c &+ 1
      }
      row = row.advanced(by: features)
      r = r &+ 1
    }
  }

  /// dx[i] = y[i] > 0 ? dy[i] : 0, where y = ReLU's output (y > 0 exactly where the input was > 0).
  /// dx may equal dy (in place). All have `count` elements.
  @inline(__always)
  public static func backward(
    y: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, count: Int
  ) {
    var i = 0
    while i < count {
      // Both loads unconditional, so the choice is a select the loop vectoriser can use, not a branch.
      let gradient = dy[i]
      dx[i] = y[i] > 0 ? gradient : 0
      i = i &+ 1
    }
  }
}
