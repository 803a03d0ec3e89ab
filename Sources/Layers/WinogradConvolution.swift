import CKernels
import Tensors

/// A 3×3 convolution at stride 1 by Winograd's F(2×2, 3×3) (the transforms and their algebra: Winograd.h);
/// `Conv2d`'s method where it applies.
///
/// Each sample's output is cut into 2×2 tiles, T = ⌈oh/2⌉·⌈ow/2⌉ of them. The batch goes through in chunks of up
/// to `samplesPerChunk` samples (n = their tiles, ≈ `tilesPerChunk`); per chunk, in the transformed domain (ξ one
/// of the 16 positions of a 4×4 tile):
///   forward    V = input transform of x [16][in][n];  M_ξ = U_ξ·V_ξ [16][out][n];  y = output transform of M
///   backward   dM = transform of dy [16][out][n];  dU_ξ += dM_ξ·V_ξᵀ [16][out][in];  dV_ξ = U_ξᵀ·dM_ξ → dx
/// with U = the weights' transform [16][out][in]. That is 16 GEMMs of k = in (forward), k = n (weight gradient)
/// and k = out (input gradient) where im2col makes one of k = 9·in per sample, and 16·T multiplications per
/// channel pair and sample where im2col makes 36·T (for even oh and ow). The weight gradient is summed over all
/// chunks in the transformed domain, then transformed back once.
///
/// The backward transforms the input again rather than keep the batch's V from the forward: keeping it (7 MB for
/// the CNN's B = 64) measured no faster, as the backward's GEMMs then read V from memory instead of a chunk's
/// buffer still in cache (BENCHMARKS.md). The scratch stays that of one chunk whatever the batch. The chunk is a
/// fixed number of samples, so a rank's result depends only on its own micro-batch, as `--simulate-workers` needs.
///
/// Scratch: U and dU 16·out·in each, V 16·in·n, M 16·out·n, and one padded image plane for the transforms
/// (`scratchCount`).
public final class WinogradConvolution {
  /// Input channels from which `Conv2d` picks this method by default.
  public static let minimumInChannels = 8
  /// Tiles per chunk by default: the weight gradient's GEMM (k = n) ran fastest near 400-500 tiles on the hosts
  /// measured, and larger chunks only add scratch (BENCHMARKS.md).
  public static let defaultTilesPerChunk = 512

  private let shape: ConvolutionGeometry
  private let tilesY: Int
  private let tilesX: Int
  /// Tiles of one sample.
  private let tilesPerSample: Int
  let samplesPerChunk: Int
  private let transformedWeights: FloatBuffer
  private let transformedWeightGradient: FloatBuffer
  /// [16][in][chunk tiles]: V, then dV in the backward.
  private let inputTiles: FloatBuffer
  /// [16][out][chunk tiles]: M, then dM in the backward.
  private let outputTiles: FloatBuffer
  private let planeScratch: FloatBuffer
  /// Floats from one ξ to the next in `inputTiles` and `outputTiles` (for the longest rows; shorter rows of a last,
  /// smaller chunk are packed closer, by the same rule).
  private let inputPlane: Int
  private let outputPlane: Int

  init(_ shape: ConvolutionGeometry, tilesPerChunk: Int) {
    precondition(shape.kernel == 3 && shape.stride == 1 && tilesPerChunk >= 1)
    self.shape = shape
    tilesY = (shape.outHeight + 1) / 2
    tilesX = (shape.outWidth + 1) / 2
    tilesPerSample = tilesY * tilesX
    samplesPerChunk = max(1, tilesPerChunk / tilesPerSample)
    let chunkTiles = Self.rowLength(tiles: samplesPerChunk * tilesPerSample)
    inputPlane = ddp_winograd_plane_stride(shape.inChannels, chunkTiles)
    outputPlane = ddp_winograd_plane_stride(shape.outChannels, chunkTiles)
    transformedWeights = FloatBuffer(count: 16 * shape.outChannels * shape.inChannels)
    transformedWeightGradient = FloatBuffer(count: 16 * shape.outChannels * shape.inChannels)
    inputTiles = FloatBuffer(count: 16 * inputPlane)
    outputTiles = FloatBuffer(count: 16 * outputPlane)
    planeScratch = FloatBuffer(count: ddp_winograd_scratch_floats(tilesY, tilesX))
  }

  var scratchCount: Int {
    transformedWeights.count + transformedWeightGradient.count + inputTiles.count + outputTiles.count
      + planeScratch.count
  }

  /// The row length (`ld`) of the transformed matrices for n tiles: room for the transforms' last vector past the
  /// last tile (Winograd.h), rounded up to whole cache lines.
  static func rowLength(tiles n: Int) -> Int { (n + 7 + 15) / 16 * 16 }

  /// V [16][in][n] (rows `ld` apart) at `tiles` for samples first..<first+count of x, n = count·T.
  private func transformInputs(
    _ x: UnsafePointer<Float>, first: Int, count: Int, ld: Int, into tiles: UnsafeMutablePointer<Float>
  ) {
    for s in 0..<count {
      ddp_winograd_transform_input(
        tiles + s * tilesPerSample, ld, x + (first + s) * shape.inputCount, shape.inChannels,
        shape.height, shape.width, shape.padding, tilesY, tilesX, planeScratch.pointer)
    }
  }

  /// The chunks of a batch: (first sample, samples).
  private func chunks(_ batch: Int) -> StrideTo<Int> { Swift.stride(from: 0, to: batch, by: samplesPerChunk) }

  func forward(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>, relu: Bool, layer: Int
  ) {
    let profile = StepProfile.current
    let (inC, outC) = (shape.inChannels, shape.outChannels)
    ddp_winograd_transform_weights(transformedWeights.pointer, weight, outC, inC)
    profile?.lap(.elementwise)
    for first in chunks(batch) {
      let count = min(samplesPerChunk, batch - first)
      let n = count * tilesPerSample
      let ld = Self.rowLength(tiles: n)
      let (inPlane, outPlane) = (ddp_winograd_plane_stride(inC, ld), ddp_winograd_plane_stride(outC, ld))
      let inputs = inputTiles.pointer
      transformInputs(x, first: first, count: count, ld: ld, into: inputs)
      profile?.lap(.elementwise)
      for xi in 0..<16 {
        // M_ξ [out, n] = U_ξ [out, in] · V_ξ [in, n]
        BLAS.sgemm(
          .none, .none, m: outC, n: n, k: inC, alpha: 1, a: transformedWeights.pointer + xi * outC * inC, lda: inC,
          b: inputs + xi * inPlane, ldb: ld, beta: 0, c: outputTiles.pointer + xi * outPlane, ldc: ld)
      }
      profile?.lapGEMM(layer: layer, .forward, transposeA: false, transposeB: false, m: outC, n: n, k: inC, calls: 16)
      for s in 0..<count {
        ddp_winograd_transform_output(
          y + (first + s) * shape.outputCount, outputTiles.pointer + s * tilesPerSample, ld, bias, outC,
          shape.outHeight, shape.outWidth, tilesY, tilesX, relu)
      }
      profile?.lap(.elementwise)
    }
  }

  /// dW += the weight gradient, dx = the input gradient when given (the bias is the caller's).
  func backward(
    x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, batch: Int,
    weight: UnsafePointer<Float>, weightGradient: UnsafeMutablePointer<Float>, layer: Int
  ) {
    let profile = StepProfile.current
    let (inC, outC) = (shape.inChannels, shape.outChannels)
    if dx != nil { ddp_winograd_transform_weights(transformedWeights.pointer, weight, outC, inC) }
    profile?.lap(.elementwise)
    for first in chunks(batch) {
      let count = min(samplesPerChunk, batch - first)
      let n = count * tilesPerSample
      let ld = Self.rowLength(tiles: n)
      let (inPlane, outPlane) = (ddp_winograd_plane_stride(inC, ld), ddp_winograd_plane_stride(outC, ld))
      let inputs = inputTiles.pointer
      transformInputs(x, first: first, count: count, ld: ld, into: inputs)
      for s in 0..<count {
        ddp_winograd_transform_output_gradient(
          outputTiles.pointer + s * tilesPerSample, ld, dy + (first + s) * shape.outputCount, outC,
          shape.outHeight, shape.outWidth, tilesY, tilesX, planeScratch.pointer)
      }
      profile?.lap(.elementwise)
      for xi in 0..<16 {
        // dU_ξ [out, in] (+)= dM_ξ [out, n] · V_ξᵀ [n, in]
        BLAS.sgemm(
          .none, .transpose, m: outC, n: inC, k: n, alpha: 1, a: outputTiles.pointer + xi * outPlane, lda: ld,
          b: inputs + xi * inPlane, ldb: ld, beta: first == 0 ? 0 : 1,
          c: transformedWeightGradient.pointer + xi * outC * inC, ldc: inC)
      }
      profile?.lapGEMM(
        layer: layer, .weightGradient, transposeA: false, transposeB: true, m: outC, n: inC, k: n, calls: 16)
      guard let dx else { continue }
      for xi in 0..<16 {
        // dV_ξ [in, n] = U_ξᵀ [in, out] · dM_ξ [out, n], over V_ξ (no longer needed)
        BLAS.sgemm(
          .transpose, .none, m: inC, n: n, k: outC, alpha: 1, a: transformedWeights.pointer + xi * outC * inC,
          lda: inC, b: outputTiles.pointer + xi * outPlane, ldb: ld, beta: 0, c: inputTiles.pointer + xi * inPlane,
          ldc: ld)
      }
      profile?.lapGEMM(
        layer: layer, .inputGradient, transposeA: true, transposeB: false, m: inC, n: n, k: outC, calls: 16)
      for s in 0..<count {
        ddp_winograd_transform_input_gradient(
          dx + (first + s) * shape.inputCount, inputTiles.pointer + s * tilesPerSample, ld, inC, shape.height,
          shape.width, shape.padding, tilesY, tilesX, planeScratch.pointer)
      }
      profile?.lap(.elementwise)
    }
    ddp_winograd_accumulate_weight_gradient(weightGradient, transformedWeightGradient.pointer, outC, inC)
    profile?.lap(.elementwise)
  }
}
