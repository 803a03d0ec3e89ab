import CKernels
import Tensors

/// A convolution at stride 1 by Winograd's F(4×4, 3×3) (the transforms and their algebra: Winograd.h);
/// `Conv2d`'s method where it applies. A larger kernel (5×5) is cut into ⌈k/3⌉² 3×3 parts, each over the input
/// shifted by its place in the kernel: the parts are the 3×3 convolution's input channels (in' = parts·in), so the
/// GEMMs sum them, and a 5×5 kernel costs 4·36 multiplications per tile and channel pair where im2col makes
/// 25·16 (2.8× fewer).
///
/// Each sample's output is cut into 4×4 tiles, T = ⌈oh/4⌉·⌈ow/4⌉ of them. The batch goes through in chunks of
/// `samplesPerChunk` samples (a multiple of 8: the transforms take eight samples at once, one per vector lane); a
/// chunk's transformed matrices have n = 8·T columns per group of eight samples. Per chunk, in the transformed
/// domain (ξ one of the 36 positions of a 6×6 tile; in' = in for a 3×3 kernel):
///   forward    V = input transform of x [36][in'][n];  M_ξ = U_ξ·V_ξ [36][out][n];  y = output transform of M
///   backward   dM = transform of dy [36][out][n];  dU_ξ += dM_ξ·V_ξᵀ [36][out][in'];  dV_ξ = U_ξᵀ·dM_ξ → dx
/// with U = the weights' transform [36][out][in']. That is 36 GEMMs of k = in' (forward), k = n (weight gradient)
/// and k = out (input gradient) where im2col makes one of k = in·k² per sample, and 36·T multiplications per part,
/// channel pair and sample where im2col makes k²·oh·ow (9·16·T for a 3×3 kernel when 4 divides oh and ow). The
/// weight gradient is summed over all chunks in the transformed domain, then transformed back once.
///
/// The backward transforms the input again rather than keep the batch's V from the forward: keeping it measured
/// no faster, as the backward's GEMMs then read V from memory instead of a chunk's buffer still in cache
/// (BENCHMARKS.md). The scratch stays that of one chunk whatever the batch. The chunk is a fixed number of samples,
/// so a rank's result depends only on its own micro-batch, as `--simulate-workers` needs; a last group of fewer
/// than eight samples fills its other lanes with zeros, which add nothing to the weight gradient.
///
/// Scratch: U and dU 36·out·in' each, V 36·in'·n, M 36·out·n, two interleaved image planes of eight samples for
/// the transforms, and for a kernel with parts its 3×3 parts or their gradient, out·in'·9 (`scratchCount`).
public final class WinogradConvolution {
  /// Input channels from which `Conv2d` picks this method by default.
  public static let minimumInChannels = 8
  /// Tiles per chunk by default, rounded down to whole groups of eight samples and at least one group: 128 (one
  /// group of 14×14 samples) ran faster than 256 and 512 on the Zen 1 host, as the 36 transformed planes of a
  /// larger chunk (4.9 MB of M at 512) no longer stay in cache between the transforms and the GEMMs (BENCHMARKS.md).
  public static let defaultTilesPerChunk = 128

  private let shape: ConvolutionGeometry
  /// Input channels of the 3×3 convolution the GEMMs see: parts × in.
  private let transformedIn: Int
  private let tilesY: Int
  private let tilesX: Int
  /// Tiles of one sample.
  private let tilesPerSample: Int
  let samplesPerChunk: Int
  private let transformedWeights: FloatBuffer
  private let transformedWeightGradient: FloatBuffer
  /// [36][in'][chunk columns]: V, then dV in the backward.
  private let inputTiles: FloatBuffer
  /// [36][out][chunk columns]: M, then dM in the backward.
  private let outputTiles: FloatBuffer
  private let planeScratch: FloatBuffer
  /// [out][in'][3][3]: the kernel's parts, then their gradient (empty for a 3×3 kernel).
  private let kernelParts: FloatBuffer

  init(_ shape: ConvolutionGeometry, tilesPerChunk: Int) {
    precondition(shape.kernel >= 2 && shape.stride == 1 && tilesPerChunk >= 1)
    self.shape = shape
    let partsAcross = (shape.kernel + 2) / 3  // ⌈k/3⌉: 1 for a 3×3 kernel
    transformedIn = partsAcross * partsAcross * shape.inChannels
    tilesY = (shape.outHeight + 3) / 4
    tilesX = (shape.outWidth + 3) / 4
    tilesPerSample = tilesY * tilesX
    samplesPerChunk = max(8, tilesPerChunk / tilesPerSample / 8 * 8)
    // The longest chunk's layout; a last, shorter chunk packs its rows and planes closer, by the same rule.
    let longest = Chunk(
      first: 0, count: samplesPerChunk, inChannels: transformedIn, outChannels: shape.outChannels,
      tilesPerSample: tilesPerSample)
    transformedWeights = FloatBuffer(count: 36 * shape.outChannels * transformedIn)
    transformedWeightGradient = FloatBuffer(count: 36 * shape.outChannels * transformedIn)
    inputTiles = FloatBuffer(count: 36 * longest.inputPlane)
    outputTiles = FloatBuffer(count: 36 * longest.outputPlane)
    planeScratch = FloatBuffer(count: ddp_winograd_scratch_floats(tilesY, tilesX, shape.kernel))
    kernelParts = FloatBuffer(count: shape.kernel == 3 ? 0 : shape.outChannels * transformedIn * 9)
  }

  var scratchCount: Int {
    transformedWeights.count + transformedWeightGradient.count + inputTiles.count + outputTiles.count
      + planeScratch.count + kernelParts.count
  }

  /// Samples first..<first+count of a batch, and the layout of their transformed matrices.
  struct Chunk {
    let first: Int
    let count: Int
    /// Their groups of eight samples (the last one may be short).
    let groups: Int
    /// The transformed matrices' columns, eight per tile of each group: the GEMMs' n.
    let columns: Int
    /// The row length of the transformed matrices: the columns rounded up to whole cache lines.
    let ld: Int
    /// Floats from one ξ's matrix to the next in `inputTiles` and `outputTiles`.
    let inputPlane: Int
    let outputPlane: Int

    init(first: Int, count: Int, inChannels: Int, outChannels: Int, tilesPerSample: Int) {
      self.first = first
      self.count = count
      groups = (count + 7) / 8
      columns = groups * 8 * tilesPerSample
      ld = (columns + 15) / 16 * 16
      inputPlane = ddp_winograd_plane_stride(inChannels, ld)
      outputPlane = ddp_winograd_plane_stride(outChannels, ld)
    }
  }

  /// The chunk of `batch` that starts at sample `first`.
  private func chunk(at first: Int, of batch: Int) -> Chunk {
    Chunk(
      first: first, count: min(samplesPerChunk, batch - first), inChannels: transformedIn,
      outChannels: shape.outChannels, tilesPerSample: tilesPerSample)
  }

  /// The first sample of each chunk of a batch.
  private func chunkStarts(_ batch: Int) -> StrideTo<Int> {
    Swift.stride(from: 0, to: batch, by: samplesPerChunk)
  }

  /// Group g (of eight samples) of a chunk: its first sample in the batch, its samples (8, or fewer for the last),
  /// and its first column of the transformed matrices.
  private func group(_ g: Int, of chunk: Chunk) -> (start: Int, samples: Int, column: Int) {
    (chunk.first + 8 * g, min(8, chunk.count - 8 * g), 8 * tilesPerSample * g)
  }

  /// V [36][in'][n] into `inputTiles` for the chunk's samples of x.
  private func transformInputs(_ x: UnsafePointer<Float>, _ chunk: Chunk) {
    for g in 0..<chunk.groups {
      let (start, samples, column) = group(g, of: chunk)
      ddp_winograd_transform_input(
        inputTiles.pointer + column, chunk.ld, chunk.inputPlane, x + start * shape.inputCount, samples,
        shape.inChannels, shape.height, shape.width, shape.padding, shape.kernel, tilesY, tilesX,
        planeScratch.pointer)
    }
  }

  /// U [36][out][in'] from the weight [out, in, k, k].
  private func transformWeights(_ weight: UnsafePointer<Float>) {
    let (inC, outC) = (shape.inChannels, shape.outChannels)
    if kernelParts.count == 0 {
      ddp_winograd_transform_weights(transformedWeights.pointer, weight, outC, inC)
    } else {
      ddp_winograd_split_kernel(kernelParts.pointer, weight, outC, inC, shape.kernel)
      ddp_winograd_transform_weights(transformedWeights.pointer, kernelParts.pointer, outC, transformedIn)
    }
  }

  func forward(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>, relu: Bool, layer: Int
  ) {
    let profile = StepProfile.current
    let (inC, outC) = (transformedIn, shape.outChannels)
    transformWeights(weight)
    profile?.lap(.elementwise)
    for first in chunkStarts(batch) {
      let chunk = chunk(at: first, of: batch)
      let (n, ld) = (chunk.columns, chunk.ld)
      let (inputs, outputs) = (inputTiles.pointer, outputTiles.pointer)
      transformInputs(x, chunk)
      profile?.lap(.elementwise)
      for xi in 0..<36 {
        // M_ξ [out, n] = U_ξ [out, in] · V_ξ [in, n]
        BLAS.sgemm(
          .none, .none, m: outC, n: n, k: inC, alpha: 1, a: transformedWeights.pointer + xi * outC * inC, lda: inC,
          b: inputs + xi * chunk.inputPlane, ldb: ld, beta: 0, c: outputs + xi * chunk.outputPlane, ldc: ld)
      }
      profile?.lapGEMM(layer: layer, .forward, transposeA: false, transposeB: false, m: outC, n: n, k: inC, calls: 36)
      for g in 0..<chunk.groups {
        let (start, samples, column) = group(g, of: chunk)
        ddp_winograd_transform_output(
          y + start * shape.outputCount, outputs + column, ld, samples, bias, outC, shape.outHeight,
          shape.outWidth, tilesY, tilesX, relu, planeScratch.pointer)
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
    let (inC, outC) = (transformedIn, shape.outChannels)
    // U again, as the forward made it (a small pass over the kernels): the backward needs nothing of the forward
    // but x.
    if dx != nil { transformWeights(weight) }
    profile?.lap(.elementwise)
    for first in chunkStarts(batch) {
      let chunk = chunk(at: first, of: batch)
      let (n, ld) = (chunk.columns, chunk.ld)
      let (inputs, outputs) = (inputTiles.pointer, outputTiles.pointer)
      transformInputs(x, chunk)
      for g in 0..<chunk.groups {
        let (start, samples, column) = group(g, of: chunk)
        ddp_winograd_transform_output_gradient(
          outputs + column, ld, dy + start * shape.outputCount, samples, outC, shape.outHeight, shape.outWidth,
          tilesY, tilesX, planeScratch.pointer)
      }
      profile?.lap(.elementwise)
      for xi in 0..<36 {
        // dU_ξ [out, in] (+)= dM_ξ [out, n] · V_ξᵀ [n, in]
        BLAS.sgemm(
          .none, .transpose, m: outC, n: inC, k: n, alpha: 1, a: outputs + xi * chunk.outputPlane, lda: ld,
          b: inputs + xi * chunk.inputPlane, ldb: ld, beta: first == 0 ? 0 : 1,
          c: transformedWeightGradient.pointer + xi * outC * inC, ldc: inC)
      }
      profile?.lapGEMM(
        layer: layer, .weightGradient, transposeA: false, transposeB: true, m: outC, n: inC, k: n, calls: 36)
      guard let dx else { continue }
      for xi in 0..<36 {
        // dV_ξ [in, n] = U_ξᵀ [in, out] · dM_ξ [out, n], over V_ξ (no longer needed)
        BLAS.sgemm(
          .transpose, .none, m: inC, n: n, k: outC, alpha: 1, a: transformedWeights.pointer + xi * outC * inC,
          lda: inC, b: outputs + xi * chunk.outputPlane, ldb: ld, beta: 0, c: inputs + xi * chunk.inputPlane, ldc: ld)
      }
      profile?.lapGEMM(
        layer: layer, .inputGradient, transposeA: true, transposeB: false, m: inC, n: n, k: outC, calls: 36)
      for g in 0..<chunk.groups {
        let (start, samples, column) = group(g, of: chunk)
        ddp_winograd_transform_input_gradient(
          dx + start * shape.inputCount, inputs + column, ld, chunk.inputPlane, samples, shape.inChannels,
          shape.height, shape.width, shape.padding, shape.kernel, tilesY, tilesX, planeScratch.pointer)
      }
      profile?.lap(.elementwise)
    }
    if kernelParts.count == 0 {
      ddp_winograd_accumulate_weight_gradient(weightGradient, transformedWeightGradient.pointer, outC, inC)
    } else {
      kernelParts.pointer.update(repeating: 0, count: kernelParts.count)
      ddp_winograd_accumulate_weight_gradient(kernelParts.pointer, transformedWeightGradient.pointer, outC, inC)
      ddp_winograd_merge_kernel_gradient(weightGradient, kernelParts.pointer, outC, shape.inChannels, shape.kernel)
    }
    profile?.lap(.elementwise)
  }
}
