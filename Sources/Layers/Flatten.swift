import Tensors

/// nn.Flatten: [c, h, w] → [c·h·w] per sample. NCHW samples are already contiguous in that order, so this is a
/// reshape: the output is the input's memory, and the gradient passes through untouched.
public final class Flatten: Layer {
  public let inputShape: [Int]

  public init(inputShape: [Int]) { self.inputShape = inputShape }

  public var outputShape: [Int] { [inputShape.reduce(1, *)] }
  public var storage: LayerStorage { .view }
  public var parameterShapes: [(suffix: String, shape: [Int])] { [] }
  public var torchExpression: String { "torch.nn.Flatten()" }
  public func bind(
    parameters: UnsafeMutablePointer<Float>?, gradients: UnsafeMutablePointer<Float>?, offset: Int, index: Int
  ) {}
  public func initializeParameters(using generator: inout Xoshiro256) {}
  public func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {}
  public func backward(
    x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, rangeElements: Int, gradientsReady: (Range<Int>) -> Void
  ) {}
}
