import CKernels
import Tensors

/// nn.Conv2d(in, out, kernel_size=k, stride=s, padding=p), square kernel, NCHW as PyTorch.
///
/// Shapes per sample: x [in, h, w] → y [out, oh, ow] with oh = (h + 2p − k)/s + 1 (ow likewise).
/// Parameters: weight [out, in, k, k] (= [out, in·k·k] row-major), bias [out].
///
/// The layer owns the parameters and the shapes; one of two methods computes (`Method`, chosen at construction):
/// Winograd's F(4×4, 3×3) or F(4×4, 5×5) (`WinogradConvolution`) for 3×3 and 5×5 kernels at stride 1 over enough
/// input channels, else one GEMM per sample over im2col columns (`ColumnConvolution`). Both agree with the direct sum
/// to rounding.
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

  /// How the convolution is computed. Both give the direct sum to rounding; they differ in speed.
  public enum Method: Sendable, Equatable {
    /// im2col and one GEMM per sample: any kernel, stride and padding.
    case columns
    /// Winograd F(4×4, 3×3) or F(4×4, 5×5): stride 1 only; up to 4× fewer multiplications than `columns` for a
    /// 3×3 kernel, 6.25× for a 5×5 one (other sizes in 3×3 parts).
    case winograd
  }
  public let method: Method

  let geometry: ConvolutionGeometry
  private let columns: ColumnConvolution?
  private let winograd: WinogradConvolution?
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

  /// The method `Conv2d` uses when not told: Winograd for 3×3 and 5×5 kernels at stride 1 with at least
  /// `WinogradConvolution.minimumInChannels` input channels, else columns. Below that, the transformed GEMMs' inner
  /// dimension (the input channels) is too thin for a GEMM to pay, while im2col's (in·9) still is.
  public static func defaultMethod(inChannels: Int, kernel: Int, stride: Int) -> Method {
    (kernel == 3 || kernel == 5) && stride == 1 && inChannels >= WinogradConvolution.minimumInChannels
      ? .winograd : .columns
  }

  /// inputShape is [in, h, w]; the kernel must fit the padded input (ModelSpec checks it with a message).
  /// `method` nil picks `defaultMethod`; `.winograd` needs stride 1 (and a kernel of 2 or more). `winogradTilesPerChunk` sets
  /// how many output tiles the Winograd GEMMs take at once (tests make it small to cover several chunks).
  public init(
    inputShape: [Int], outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0, method: Method? = nil,
    winogradTilesPerChunk: Int = WinogradConvolution.defaultTilesPerChunk
  ) {
    precondition(inputShape.count == 3, "Conv2d takes [channels, height, width] samples, got \(inputShape)")
    precondition(outChannels > 0 && padding < kernel, "Conv2d: bad channels or padding")
    guard
      let outHeight = Self.outputSide(input: inputShape[1], kernel: kernel, stride: stride, padding: padding),
      let outWidth = Self.outputSide(input: inputShape[2], kernel: kernel, stride: stride, padding: padding)
    else { preconditionFailure("Conv2d kernel \(kernel) does not fit the input \(inputShape)") }
    self.inputShape = inputShape
    inChannels = inputShape[0]
    self.outChannels = outChannels
    self.kernel = kernel
    self.stride = stride
    self.padding = padding
    outputShape = [outChannels, outHeight, outWidth]
    geometry = ConvolutionGeometry(
      inChannels: inChannels, height: inputShape[1], width: inputShape[2], outChannels: outChannels,
      kernel: kernel, stride: stride, padding: padding, outHeight: outHeight, outWidth: outWidth)
    let method = method ?? Self.defaultMethod(inChannels: inChannels, kernel: kernel, stride: stride)
    self.method = method
    switch method {
    case .columns:
      columns = ColumnConvolution(geometry)
      winograd = nil
    case .winograd:
      precondition(kernel >= 2 && stride == 1, "Winograd needs a kernel of 2 or more at stride 1")
      columns = nil
      winograd = WinogradConvolution(geometry, tilesPerChunk: winogradTilesPerChunk)
    }
  }

  public var storage: LayerStorage { .own }
  public var parameterShapes: [(suffix: String, shape: [Int])] {
    [("weight", [outChannels, inChannels, kernel, kernel]), ("bias", [outChannels])]
  }
  public var torchExpression: String {
    "torch.nn.Conv2d(\(inChannels), \(outChannels), kernel_size=\(kernel), stride=\(stride), padding=\(padding))"
  }

  /// Floats of scratch the method holds (the columns, or the transformed tiles), whatever the batch.
  public var scratchCount: Int { columns?.scratchCount ?? winograd!.scratchCount }

  public func bind(
    parameters: UnsafeMutablePointer<Float>?, gradients: UnsafeMutablePointer<Float>?, offset: Int, index: Int
  ) {
    weight = parameters
    weightGradient = gradients
    weightOffset = offset
    self.index = index
  }

  public func initializeParameters(using generator: inout Xoshiro256) {
    initializeUniformByFanIn(
      weight, count: outChannels * geometry.patch + outChannels, fanIn: geometry.patch, using: &generator)
  }

  public func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
    let bias = UnsafePointer(weight + outChannels * geometry.patch)
    if let columns {
      columns.forward(x, into: y, batch: batch, weight: weight, bias: bias, relu: appliesReLU, layer: index)
    } else {
      winograd!.forward(x, into: y, batch: batch, weight: weight, bias: bias, relu: appliesReLU, layer: index)
    }
  }

  /// dBias += Σ_pixels dy per sample; dW += the method's weight gradient; dx = its input gradient. The whole weight
  /// and bias are final only after the last sample, so they are reported as one range at the end.
  public func backward(
    x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, rangeElements: Int, gradientsReady: (Range<Int>) -> Void
  ) {
    let profile = StepProfile.current
    let dBias = weightGradient + outChannels * geometry.patch
    for b in 0..<batch {
      ddp_accumulate_channel_sums(dBias, dy + b * outputCount, outChannels, geometry.pixels)
    }
    profile?.lap(.elementwise)
    if let columns {
      columns.backward(
        x: x, dy: UnsafePointer(dy), dx: dx, batch: batch, weight: weight, weightGradient: weightGradient,
        layer: index)
    } else {
      winograd!.backward(
        x: x, dy: UnsafePointer(dy), dx: dx, batch: batch, weight: weight, weightGradient: weightGradient,
        layer: index)
    }
    gradientsReady(weightOffset..<(weightOffset + outChannels * geometry.patch + outChannels))
    profile?.lap(.communication)
  }

  /// im2col's GEMMs, one per sample, whichever method runs.
  public func columnFormulation(batch: Int, inputGradient: Bool) -> [StepProfile.GEMMSite] {
    let (out, patch, pixels) = (outChannels, geometry.patch, geometry.pixels)
    var sites = [
      StepProfile.GEMMSite(
        name: "\(index).fwd", transposeA: false, transposeB: false, m: out, n: pixels, k: patch, calls: batch),
      StepProfile.GEMMSite(
        name: "\(index).dW", transposeA: false, transposeB: true, m: out, n: patch, k: pixels, calls: batch),
    ]
    if inputGradient {
      sites.append(
        StepProfile.GEMMSite(
          name: "\(index).dx", transposeA: true, transposeB: false, m: patch, n: pixels, k: out, calls: batch))
    }
    return sites
  }
}

/// A convolution's sizes, as both methods need them.
struct ConvolutionGeometry {
  let inChannels: Int
  let height: Int
  let width: Int
  let outChannels: Int
  let kernel: Int
  let stride: Int
  let padding: Int
  let outHeight: Int
  let outWidth: Int
  /// in·k·k: the im2col GEMM's inner dimension.
  var patch: Int { inChannels * kernel * kernel }
  /// oh·ow.
  var pixels: Int { outHeight * outWidth }
  /// Elements of one input and one output sample.
  var inputCount: Int { inChannels * height * width }
  var outputCount: Int { outChannels * pixels }
}
