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

  init(_ shape: ConvolutionGeometry, tilesPerChunk: Int) {
    precondition(shape.kernel == 3 && shape.stride == 1 && tilesPerChunk >= 1)
    self.shape = shape
    tilesY = (shape.outHeight + 1) / 2
    tilesX = (shape.outWidth + 1) / 2
    tilesPerSample = tilesY * tilesX
    samplesPerChunk = max(1, tilesPerChunk / tilesPerSample)
    // The longest chunk's layout; a last, shorter chunk packs its rows and planes closer, by the same rule.
    let longest = Chunk(first: 0, count: samplesPerChunk, shape: shape, tilesPerSample: tilesPerSample)
    transformedWeights = FloatBuffer(count: 16 * shape.outChannels * shape.inChannels)
    transformedWeightGradient = FloatBuffer(count: 16 * shape.outChannels * shape.inChannels)
    inputTiles = FloatBuffer(count: 16 * longest.inputPlane)
    outputTiles = FloatBuffer(count: 16 * longest.outputPlane)
    planeScratch = FloatBuffer(count: ddp_winograd_scratch_floats(tilesY, tilesX))
  }

  var scratchCount: Int {
    transformedWeights.count + transformedWeightGradient.count + inputTiles.count + outputTiles.count
      + planeScratch.count
  }

  /// Samples first..<first+count of a batch, and the layout of their transformed matrices.
  struct Chunk {
    let first: Int
    let count: Int
    /// Their tiles: the GEMMs' n.
    let tiles: Int
    /// The row length of the transformed matrices: room for the transforms' last vector past the last tile
    /// (Winograd.h), rounded up to whole cache lines.
    let ld: Int
    /// Floats from one ξ's matrix to the next in `inputTiles` and `outputTiles`.
    let inputPlane: Int
    let outputPlane: Int

    init(first: Int, count: Int, shape: ConvolutionGeometry, tilesPerSample: Int) {
      self.first = first
      self.count = count
      tiles = count * tilesPerSample
      ld = (tiles + 7 + 15) / 16 * 16
      inputPlane = ddp_winograd_plane_stride(shape.inChannels, ld)
      outputPlane = ddp_winograd_plane_stride(shape.outChannels, ld)
    }
  }

  /// The chunk of `batch` that starts at sample `first`.
  private func chunk(at first: Int, of batch: Int) -> Chunk {
    Chunk(first: first, count: min(samplesPerChunk, batch - first), shape: shape, tilesPerSample: tilesPerSample)
  }

  /// The first sample of each chunk of a batch.
  private func chunkStarts(_ batch: Int) -> StrideTo<Int> {
    Swift.stride(from: 0, to: batch, by: samplesPerChunk)
  }

  /// V [16][in][n] into `inputTiles` for the chunk's samples of x.
  private func transformInputs(_ x: UnsafePointer<Float>, _ chunk: Chunk) {
    for s in 0..<chunk.count {
      ddp_winograd_transform_input(
        inputTiles.pointer + s * tilesPerSample, chunk.ld, x + (chunk.first + s) * shape.inputCount,
        shape.inChannels, shape.height, shape.width, shape.padding, tilesY, tilesX, planeScratch.pointer)
    }
  }

  func forward(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>, relu: Bool, layer: Int
  ) {
    let profile = StepProfile.current
    let (inC, outC) = (shape.inChannels, shape.outChannels)
    ddp_winograd_transform_weights(transformedWeights.pointer, weight, outC, inC)
    profile?.lap(.elementwise)
    for first in chunkStarts(batch) {
      let chunk = chunk(at: first, of: batch)
      let (n, ld, count) = (chunk.tiles, chunk.ld, chunk.count)
      let (inputs, outputs) = (inputTiles.pointer, outputTiles.pointer)
      transformInputs(x, chunk)
      profile?.lap(.elementwise)
      for xi in 0..<16 {
        // M_ξ [out, n] = U_ξ [out, in] · V_ξ [in, n]
        BLAS.sgemm(
          .none, .none, m: outC, n: n, k: inC, alpha: 1, a: transformedWeights.pointer + xi * outC * inC, lda: inC,
          b: inputs + xi * chunk.inputPlane, ldb: ld, beta: 0, c: outputs + xi * chunk.outputPlane, ldc: ld)
      }
      profile?.lapGEMM(layer: layer, .forward, transposeA: false, transposeB: false, m: outC, n: n, k: inC, calls: 16)
      for s in 0..<count {
        ddp_winograd_transform_output(
          y + (first + s) * shape.outputCount, outputs + s * tilesPerSample, ld, bias, outC,
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
    for first in chunkStarts(batch) {
      let chunk = chunk(at: first, of: batch)
      let (n, ld, count) = (chunk.tiles, chunk.ld, chunk.count)
      let (inputs, outputs) = (inputTiles.pointer, outputTiles.pointer)
      transformInputs(x, chunk)
      for s in 0..<count {
        ddp_winograd_transform_output_gradient(
          outputs + s * tilesPerSample, ld, dy + (first + s) * shape.outputCount, outC,
          shape.outHeight, shape.outWidth, tilesY, tilesX, planeScratch.pointer)
      }
      profile?.lap(.elementwise)
      for xi in 0..<16 {
        // dU_ξ [out, in] (+)= dM_ξ [out, n] · V_ξᵀ [n, in]
        BLAS.sgemm(
          .none, .transpose, m: outC, n: inC, k: n, alpha: 1, a: outputs + xi * chunk.outputPlane, lda: ld,
          b: inputs + xi * chunk.inputPlane, ldb: ld, beta: first == 0 ? 0 : 1,
          c: transformedWeightGradient.pointer + xi * outC * inC, ldc: inC)
      }
      profile?.lapGEMM(
        layer: layer, .weightGradient, transposeA: false, transposeB: true, m: outC, n: inC, k: n, calls: 16)
      guard let dx else { continue }
      for xi in 0..<16 {
        // dV_ξ [in, n] = U_ξᵀ [in, out] · dM_ξ [out, n], over V_ξ (no longer needed)
        BLAS.sgemm(
          .transpose, .none, m: inC, n: n, k: outC, alpha: 1, a: transformedWeights.pointer + xi * outC * inC,
          lda: inC, b: outputs + xi * chunk.outputPlane, ldb: ld, beta: 0, c: inputs + xi * chunk.inputPlane, ldc: ld)
      }
      profile?.lapGEMM(
        layer: layer, .inputGradient, transposeA: true, transposeB: false, m: inC, n: n, k: outC, calls: 16)
      for s in 0..<count {
        ddp_winograd_transform_input_gradient(
          dx + (first + s) * shape.inputCount, inputs + s * tilesPerSample, ld, inC, shape.height,
          shape.width, shape.padding, tilesY, tilesX, planeScratch.pointer)
      }
      profile?.lap(.elementwise)
    }
    ddp_winograd_accumulate_weight_gradient(weightGradient, transformedWeightGradient.pointer, outC, inC)
    profile?.lap(.elementwise)
  }
}
