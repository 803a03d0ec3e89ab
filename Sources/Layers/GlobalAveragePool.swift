import Tensors

/// `gap`: global average pooling, nn.AdaptiveAvgPool2d(1) followed by nn.Flatten(), as one module (PyTorch writes
/// it as a nested `torch.nn.Sequential`, so the layer indices after it stay those of `seq:`).
///
/// Shapes per sample: x [c, h, w] → y [c], y[ch] = Σ_pixels x[ch] / (h·w) (summed in double, in pixel order).
/// Backward: dx[ch][p] = dy[ch] / (h·w).
public final class GlobalAveragePool: Layer {
  public let inputShape: [Int]
  private let channels: Int
  private let pixels: Int

  public init(inputShape: [Int]) {
    precondition(inputShape.count == 3, "global average pooling takes [c, h, w] samples, got \(inputShape)")
    self.inputShape = inputShape
    channels = inputShape[0]
    pixels = inputShape[1] * inputShape[2]
  }

  public var outputShape: [Int] { [channels] }
  public var storage: LayerStorage { .own }
  public var parameterShapes: [(suffix: String, shape: [Int])] { [] }
  public var torchExpression: String {
    "torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())"
  }
  public func bind(
    parameters: UnsafeMutablePointer<Float>?, gradients: UnsafeMutablePointer<Float>?, offset: Int, index: Int
  ) {}
  public func initializeParameters(using generator: inout Xoshiro256) {}

  public func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
    let scale = 1 / Double(pixels)
    for row in 0..<(batch * channels) {
      let plane = x + row * pixels
      var sum = 0.0
      for p in 0..<pixels { sum += Double(plane[p]) }
      y[row] = Float(sum * scale)
    }
    StepProfile.current?.lap(.elementwise)
  }

  public func backward(
    x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, rangeElements: Int, gradientsReady: (Range<Int>) -> Void
  ) {
    guard let dx else { return }
    let scale = 1 / Float(pixels)
    for row in 0..<(batch * channels) {
      let value = dy[row] * scale
      (dx + row * pixels).update(repeating: value, count: pixels)
    }
    StepProfile.current?.lap(.elementwise)
  }
}
