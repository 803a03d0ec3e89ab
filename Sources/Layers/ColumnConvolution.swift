import CKernels
import Tensors

/// A convolution as im2col and one GEMM per sample (any kernel, stride and padding); `Conv2d`'s method for what
/// Winograd does not take.
///
/// cols [in·k·k, oh·ow] holds one sample's input patches, and y = W·cols. The columns are one sample's (at most a
/// few hundred KB for the networks here), so they stay in cache between im2col and the GEMM instead of streaming
/// a whole batch's from memory. The backward builds them again rather than keeping the batch's: dW += dy·colsᵀ, and
/// for dx, dcols = Wᵀ·dy, folded back by col2im.
final class ColumnConvolution {
  private let shape: ConvolutionGeometry
  /// One sample's im2col columns [patch, pixels], and their gradient (backward with dx only).
  private let columns: FloatBuffer
  private let columnGradient: FloatBuffer

  init(_ shape: ConvolutionGeometry) {
    self.shape = shape
    columns = FloatBuffer(count: shape.patch * shape.pixels)
    columnGradient = FloatBuffer(count: shape.patch * shape.pixels)
  }

  var scratchCount: Int { columns.count + columnGradient.count }

  private func im2col(_ sample: UnsafePointer<Float>) {
    ddp_im2col(
      columns.pointer, sample, shape.inChannels, shape.height, shape.width, shape.kernel, shape.stride,
      shape.padding, shape.outHeight, shape.outWidth)
  }

  /// y [batch, out, oh, ow] = W·cols(x) + bias (then ReLU when `relu`).
  func forward(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>, relu: Bool, layer: Int
  ) {
    let profile = StepProfile.current
    let (out, patch, pixels) = (shape.outChannels, shape.patch, shape.pixels)
    for b in 0..<batch {
      im2col(x + b * shape.inputCount)
      profile?.lap(.elementwise)
      let output = y + b * shape.outputCount
      // y_b [out, pixels] = W [out, patch] · cols [patch, pixels]
      BLAS.sgemm(
        .none, .none, m: out, n: pixels, k: patch, alpha: 1, a: weight, lda: patch, b: columns.pointer,
        ldb: pixels, beta: 0, c: output, ldc: pixels)
      profile?.lapGEMM(layer: layer, .forward, transposeA: false, transposeB: false, m: out, n: pixels, k: patch)
      ddp_add_channel_bias(output, bias, out, pixels, relu)
      profile?.lap(.elementwise)
    }
  }

  /// Per sample: dW += dy_b·colsᵀ; dx_b = col2im(Wᵀ·dy_b) when dx is given.
  func backward(
    x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, batch: Int,
    weight: UnsafePointer<Float>, weightGradient: UnsafeMutablePointer<Float>, layer: Int
  ) {
    let profile = StepProfile.current
    let (out, patch, pixels) = (shape.outChannels, shape.patch, shape.pixels)
    for b in 0..<batch {
      let gradient = dy + b * shape.outputCount
      im2col(x + b * shape.inputCount)
      profile?.lap(.elementwise)
      // dW [out, patch] += dy_b [out, pixels] · colsᵀ [pixels, patch]
      BLAS.sgemm(
        .none, .transpose, m: out, n: patch, k: pixels, alpha: 1, a: gradient, lda: pixels, b: columns.pointer,
        ldb: pixels, beta: 1, c: weightGradient, ldc: patch)
      profile?.lapGEMM(
        layer: layer, .weightGradient, transposeA: false, transposeB: true, m: out, n: patch, k: pixels)
      guard let dx else { continue }
      // dcols [patch, pixels] = Wᵀ [patch, out] · dy_b [out, pixels]
      BLAS.sgemm(
        .transpose, .none, m: patch, n: pixels, k: out, alpha: 1, a: weight, lda: patch, b: gradient, ldb: pixels,
        beta: 0, c: columnGradient.pointer, ldc: pixels)
      profile?.lapGEMM(
        layer: layer, .inputGradient, transposeA: true, transposeB: false, m: patch, n: pixels, k: out)
      ddp_col2im(
        dx + b * shape.inputCount, columnGradient.pointer, shape.inChannels, shape.height, shape.width,
        shape.kernel, shape.stride, shape.padding, shape.outHeight, shape.outWidth)
      profile?.lap(.elementwise)
    }
  }
}
