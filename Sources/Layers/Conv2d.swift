import CKernels
import Tensors

/// nn.Conv2d(in, out, kernel_size=k, stride=s, padding=p), square kernel, NCHW as PyTorch.
///
/// Shapes per sample: x [in, h, w] → y [out, oh, ow] with oh = (h + 2p − k)/s + 1 (ow likewise).
/// Parameters: weight [out, in, k, k] (= [out, in·k·k] row-major), bias [out].
///
/// Each sample goes through im2col and one GEMM: cols [in·k·k, oh·ow] holds the input patches, y = W·cols.
/// The columns are one sample's (at most a few hundred KB for the networks here), so they stay in cache
/// between im2col and the GEMM instead of streaming a whole batch's from memory. The backward builds them
/// again rather than keeping the batch's: dW += dy·colsᵀ, and for dx, dcols = Wᵀ·dy, folded back by col2im.
public final class Conv2d: Layer {
  public let inputShape: [Int]
  public let inChannels: Int
  public let outChannels: Int
  public let kernel: Int
  public let stride: Int
  public let padding: Int
  public let outputShape: [Int]
  /// y = max(conv + b, 0) (set by `Sequential` when a ReLU follows).
  var appliesReLU = false

  private let height: Int
  private let width: Int
  private let outHeight: Int
  private let outWidth: Int
  /// in·k·k: the GEMM's inner dimension.
  private let patch: Int
  /// oh·ow.
  private let pixels: Int
  /// One sample's im2col columns [patch, pixels], and their gradient (backward with dx only).
  private let columns: FloatBuffer
  private let columnGradient: FloatBuffer
  private var weight: UnsafeMutablePointer<Float>!
  private var weightGradient: UnsafeMutablePointer<Float>!
  private var weightOffset = 0
  private var index = 0

  /// The output grid for an input side, or nil when the kernel does not fit the padded input.
  public static func outputSide(input: Int, kernel: Int, stride: Int, padding: Int) -> Int? {
    let padded = input + 2 * padding
    guard kernel >= 1, stride >= 1, padding >= 0, padded >= kernel else { return nil }
    return (padded - kernel) / stride + 1
  }

  /// inputShape is [in, h, w]; the kernel must fit the padded input (ModelSpec checks it with a message).
  public init(inputShape: [Int], outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0) {
    precondition(inputShape.count == 3, "Conv2d takes [channels, height, width] samples, got \(inputShape)")
    precondition(outChannels > 0 && padding < kernel, "Conv2d: bad channels or padding")
    guard
      let outHeight = Self.outputSide(input: inputShape[1], kernel: kernel, stride: stride, padding: padding),
      let outWidth = Self.outputSide(input: inputShape[2], kernel: kernel, stride: stride, padding: padding)
    else { preconditionFailure("Conv2d kernel \(kernel) does not fit the input \(inputShape)") }
    self.inputShape = inputShape
    (inChannels, height, width) = (inputShape[0], inputShape[1], inputShape[2])
    self.outChannels = outChannels
    self.kernel = kernel
    self.stride = stride
    self.padding = padding
    self.outHeight = outHeight
    self.outWidth = outWidth
    outputShape = [outChannels, outHeight, outWidth]
    patch = inChannels * kernel * kernel
    pixels = outHeight * outWidth
    columns = FloatBuffer(count: patch * pixels)
    columnGradient = FloatBuffer(count: patch * pixels)
  }

  public var storage: LayerStorage { .own }
  public var parameterShapes: [(suffix: String, shape: [Int])] {
    [("weight", [outChannels, inChannels, kernel, kernel]), ("bias", [outChannels])]
  }
  public var torchExpression: String {
    "torch.nn.Conv2d(\(inChannels), \(outChannels), kernel_size=\(kernel), stride=\(stride), padding=\(padding))"
  }

  public func bind(
    parameters: UnsafeMutablePointer<Float>?, gradients: UnsafeMutablePointer<Float>?, offset: Int, index: Int
  ) {
    weight = parameters
    weightGradient = gradients
    weightOffset = offset
    self.index = index
  }

  public func initializeParameters(using generator: inout Xoshiro256) {
    initializeUniformByFanIn(weight, count: outChannels * patch + outChannels, fanIn: patch, using: &generator)
  }

  private func im2col(_ sample: UnsafePointer<Float>) {
    ddp_im2col(
      columns.pointer, sample, inChannels, height, width, kernel, stride, padding, outHeight, outWidth)
  }

  public func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
    let profile = StepProfile.current
    let bias = UnsafePointer(weight + outChannels * patch)
    for b in 0..<batch {
      im2col(x + b * inputCount)
      profile?.lap(.elementwise)
      let out = y + b * outputCount
      // y_b [out, pixels] = W [out, patch] · cols [patch, pixels]
      BLAS.sgemm(
        .none, .none, m: outChannels, n: pixels, k: patch, alpha: 1, a: weight, lda: patch,
        b: columns.pointer, ldb: pixels, beta: 0, c: out, ldc: pixels)
      profile?.lapGEMM(
        layer: index, .forward, transposeA: false, transposeB: false, m: outChannels, n: pixels, k: patch)
      ddp_add_channel_bias(out, bias, outChannels, pixels, appliesReLU)
      profile?.lap(.elementwise)
    }
  }

  /// Per sample: dBias += Σ_pixels dy_b; dW += dy_b·colsᵀ; dx_b = col2im(Wᵀ·dy_b). The whole weight and bias
  /// are final only after the last sample, so they are reported as one range at the end.
  public func backward(
    x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, rangeElements: Int, gradientsReady: (Range<Int>) -> Void
  ) {
    let profile = StepProfile.current
    let dWeight = weightGradient!
    let dBias = dWeight + outChannels * patch
    for b in 0..<batch {
      let gradient = UnsafePointer(dy + b * outputCount)
      ddp_accumulate_channel_sums(dBias, gradient, outChannels, pixels)
      im2col(x + b * inputCount)
      profile?.lap(.elementwise)
      // dW [out, patch] += dy_b [out, pixels] · colsᵀ [pixels, patch]
      BLAS.sgemm(
        .none, .transpose, m: outChannels, n: patch, k: pixels, alpha: 1, a: gradient, lda: pixels,
        b: columns.pointer, ldb: pixels, beta: 1, c: dWeight, ldc: patch)
      profile?.lapGEMM(
        layer: index, .weightGradient, transposeA: false, transposeB: true, m: outChannels, n: patch, k: pixels)
      guard let dx else { continue }
      // dcols [patch, pixels] = Wᵀ [patch, out] · dy_b [out, pixels]
      BLAS.sgemm(
        .transpose, .none, m: patch, n: pixels, k: outChannels, alpha: 1, a: weight, lda: patch, b: gradient,
        ldb: pixels, beta: 0, c: columnGradient.pointer, ldc: pixels)
      profile?.lapGEMM(
        layer: index, .inputGradient, transposeA: true, transposeB: false, m: patch, n: pixels, k: outChannels)
      ddp_col2im(
        dx + b * inputCount, columnGradient.pointer, inChannels, height, width, kernel, stride, padding, outHeight,
        outWidth)
      profile?.lap(.elementwise)
    }
    gradientsReady(weightOffset..<(weightOffset + outChannels * patch + outChannels))
    profile?.lap(.communication)
  }
}
