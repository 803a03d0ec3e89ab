import CKernels
import Tensors

/// nn.MaxPool2d(kernel_size=k, stride=s), no padding, floor mode (PyTorch's defaults).
///
/// Shapes per sample: x [c, h, w] → y [c, oh, ow] with oh = (h − k)/s + 1 (ow likewise). The forward records
/// where each maximum came from (the first in row-major window order), and the backward sends each output's
/// gradient there: dx = 0, then dx[argmax] += dy (overlapping windows, s < k, add up).
public final class MaxPool2d: Layer {
  public let inputShape: [Int]
  public let kernel: Int
  public let stride: Int
  public let outputShape: [Int]
  /// [maxBatch, outputCount]: index into the sample's input of each output's maximum.
  private let argmax: UnsafeMutablePointer<Int32>
  private let maxBatch: Int
  /// dx[argmax] += dy only where the maximum (x[argmax] = y) is > 0: the mask of a ReLU right before, applied
  /// here (set by `Sequential`, which then skips the ReLU's backward).
  var rectifiesInputGradient = false

  public init(inputShape: [Int], kernel: Int, stride: Int, maxBatch: Int) {
    precondition(inputShape.count == 3, "MaxPool2d takes [channels, height, width] samples, got \(inputShape)")
    precondition(kernel >= 1 && stride >= 1 && inputShape[1] >= kernel && inputShape[2] >= kernel)
    self.inputShape = inputShape
    self.kernel = kernel
    self.stride = stride
    self.maxBatch = maxBatch
    outputShape = [inputShape[0], (inputShape[1] - kernel) / stride + 1, (inputShape[2] - kernel) / stride + 1]
    let count = maxBatch * outputShape.reduce(1, *)
    argmax = .allocate(capacity: count)
    argmax.initialize(repeating: 0, count: count)
  }

  deinit { argmax.deallocate() }

  public var storage: LayerStorage { .own }
  public var parameterShapes: [(suffix: String, shape: [Int])] { [] }
  public var torchExpression: String { "torch.nn.MaxPool2d(kernel_size=\(kernel), stride=\(stride))" }
  public func bind(
    parameters: UnsafeMutablePointer<Float>?, gradients: UnsafeMutablePointer<Float>?, offset: Int, index: Int
  ) {}
  public func initializeParameters(using generator: inout Xoshiro256) {}

  public func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
    precondition(batch <= maxBatch, "batch \(batch) over the pool's \(maxBatch)")
    let (channels, height, width) = (inputShape[0], inputShape[1], inputShape[2])
    for b in 0..<batch {
      ddp_max_pool(
        y + b * outputCount, argmax + b * outputCount, x + b * inputCount, channels, height, width, kernel, stride,
        outputShape[1], outputShape[2])
    }
    StepProfile.current?.lap(.elementwise)
  }

  public func backward(
    x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, rangeElements: Int, gradientsReady: (Range<Int>) -> Void
  ) {
    guard let dx else { return }
    for b in 0..<batch {
      ddp_max_pool_backward(
        dx + b * inputCount, dy + b * outputCount, argmax + b * outputCount,
        rectifiesInputGradient ? y + b * outputCount : nil, inputShape[0], inputShape[1], inputShape[2], kernel,
        stride, outputShape[1], outputShape[2])
    }
    StepProfile.current?.lap(.elementwise)
  }
}
