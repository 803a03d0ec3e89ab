import CKernels
import Tensors

/// A convolution at stride 1 by Winograd's F(4×4, 3×3) for a 3×3 kernel and F(4×4, 5×5) for a 5×5 one (the
/// transforms and their algebra: Winograd.h); `Conv2d`'s method where it applies. The transformed tiles are
/// side × side, side = 6 or 8, and P = side² positions ξ. A 5×5 kernel then costs 64 multiplications per 4×4 tile
/// and channel pair where im2col makes 400 (6.25× fewer). Another kernel size (forced: `Conv2d.defaultMethod` picks
/// 3 and 5) is cut into ⌈k/3⌉² 3×3 parts, each over the input shifted by its place in the kernel: the parts are the
/// 3×3 convolution's input channels (in' = parts·in), so the GEMMs sum them.
///
/// Each sample's output is cut into 4×4 tiles, T = ⌈oh/4⌉·⌈ow/4⌉ of them. The batch goes through in chunks of
/// `samplesPerChunk` samples (a multiple of 8: the transforms take eight samples at once, one per vector lane); a
/// chunk's transformed matrices have n = 8·T columns per group of eight samples. Per chunk, in the transformed
/// domain (ξ one of the P positions of a tile; in' = in for a 3×3 or 5×5 kernel):
///   forward    V = input transform of x [P][in'][n];  M_ξ = U_ξ·V_ξ [P][out][n];  y = output transform of M
///   backward   dM = transform of dy [P][out][n];  dU_ξ += dM_ξ·V_ξᵀ [P][out][in'];  dV_ξ = U_ξᵀ·dM_ξ → dx
/// with U = the weights' transform [P][out][in']. That is P GEMMs of k = in' (forward), k = n (weight gradient)
/// and k = out (input gradient) where im2col makes one of k = in·k² per sample, and P·T multiplications per part,
/// channel pair and sample where im2col makes k²·oh·ow (9·16·T for a 3×3 kernel when 4 divides oh and ow). The
/// weight gradient is summed over all chunks in the transformed domain, then transformed back once.
///
/// The backward transforms the input again rather than keep the batch's V from the forward: keeping it measured
/// no faster, as the backward's GEMMs then read V from memory instead of a chunk's buffer still in cache
/// (BENCHMARKS.md). The scratch stays that of one chunk whatever the batch. The chunk is a fixed number of samples,
/// so a rank's result depends only on its own micro-batch, as `--simulate-workers` needs; a last group of fewer
/// than eight samples fills its other lanes with zeros, which add nothing to the weight gradient.
///
/// Scratch: U and dU P·out·in' each, V P·in'·n, M P·out·n, two interleaved image planes of eight samples for
/// the transforms, and for a kernel with parts its 3×3 parts or their gradient, out·in'·9 (`scratchCount`).
public final class WinogradConvolution {
  /// Input channels from which `Conv2d` picks this method by default.
  public static let minimumInChannels = 8
  /// Tiles per chunk by default, rounded down to whole groups of eight samples and at least one group: 128 (one
  /// group of 14×14 samples) ran faster than 256 and 512 on the Zen 1 host, as the 36 transformed planes of a
  /// larger chunk (4.9 MB of M at 512) no longer stay in cache between the transforms and the GEMMs (BENCHMARKS.md).
  public static let defaultTilesPerChunk = 128

  private let shape: ConvolutionGeometry
  /// The positions of a transformed tile: 36 for F(4×4, 3×3), 64 for F(4×4, 5×5).
  let positions: Int
  /// The kernel size the transforms and the weights' transform take: 5 for F(4×4, 5×5), else 3 (the parts').
  private let transformKernel: Int
  /// Input channels of the 3×3 convolution the GEMMs see: parts × in.
  private let transformedIn: Int
  private let tilesY: Int
  private let tilesX: Int
  /// Tiles of one sample.
  private let tilesPerSample: Int
  let samplesPerChunk: Int
  private let transformedWeights: FloatBuffer
  private let transformedWeightGradient: FloatBuffer
  /// [P][in'][chunk columns]: V, then dV in the backward.
  private let inputTiles: FloatBuffer
  /// [P][out][chunk columns]: M, then dM in the backward.
  private let outputTiles: FloatBuffer
  private let planeScratch: FloatBuffer
  /// [out][in'][3][3]: the kernel's parts, then their gradient (empty for a 3×3 kernel).
  private let kernelParts: FloatBuffer

  init(_ shape: ConvolutionGeometry, tilesPerChunk: Int) {
    precondition(shape.kernel >= 2 && shape.stride == 1 && tilesPerChunk >= 1)
    self.shape = shape
    let partsAcross = ddp_winograd_parts_across(shape.kernel)  // 1 for a 3×3 or 5×5 kernel, else ⌈k/3⌉
    transformedIn = partsAcross * partsAcross * shape.inChannels
    let side = ddp_winograd_tile_side(shape.kernel)
    positions = side * side
    transformKernel = shape.kernel == 5 ? 5 : 3
    tilesY = (shape.outHeight + 3) / 4
    tilesX = (shape.outWidth + 3) / 4
    tilesPerSample = tilesY * tilesX
    samplesPerChunk = max(8, tilesPerChunk / tilesPerSample / 8 * 8)
    // The longest chunk's layout; a last, shorter chunk packs its rows and planes closer, by the same rule.
    let longest = Chunk(
      first: 0, count: samplesPerChunk, inChannels: transformedIn, outChannels: shape.outChannels,
      tilesPerSample: tilesPerSample)
    transformedWeights = FloatBuffer(count: positions * shape.outChannels * transformedIn)
    transformedWeightGradient = FloatBuffer(count: positions * shape.outChannels * transformedIn)
    inputTiles = FloatBuffer(count: positions * longest.inputPlane)
    outputTiles = FloatBuffer(count: positions * longest.outputPlane)
    planeScratch = FloatBuffer(count: ddp_winograd_scratch_floats(tilesY, tilesX, shape.kernel))
    kernelParts = FloatBuffer(count: shape.kernel == transformKernel ? 0 : shape.outChannels * transformedIn * 9)
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

  /// V [P][in'][n] into `inputTiles` for the chunk's samples of x.
  private func transformInputs(_ x: UnsafePointer<Float>, _ chunk: Chunk) {
    for g in 0..<chunk.groups {
      let (start, samples, column) = group(g, of: chunk)
      ddp_winograd_transform_input(
        inputTiles.pointer + column, chunk.ld, chunk.inputPlane, x + start * shape.inputCount, samples,
        shape.inChannels, shape.height, shape.width, shape.padding, shape.kernel, tilesY, tilesX,
        planeScratch.pointer)
    }
  }

  /// U [P][out][in'] from the weight [out, in, k, k].
  private func transformWeights(_ weight: UnsafePointer<Float>) {
    let (inC, outC) = (shape.inChannels, shape.outChannels)
    if kernelParts.count == 0 {
      ddp_winograd_transform_weights(transformedWeights.pointer, weight, outC, inC, transformKernel)
    } else {
      ddp_winograd_split_kernel(kernelParts.pointer, weight, outC, inC, shape.kernel)
      ddp_winograd_transform_weights(transformedWeights.pointer, kernelParts.pointer, outC, transformedIn, 3)
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
      for xi in 0..<positions {
        // M_ξ [out, n] = U_ξ [out, in] · V_ξ [in, n]
        BLAS.sgemm(
          .none, .none, m: outC, n: n, k: inC, alpha: 1, a: transformedWeights.pointer + xi * outC * inC, lda: inC,
          b: inputs + xi * chunk.inputPlane, ldb: ld, beta: 0, c: outputs + xi * chunk.outputPlane, ldc: ld)
      }
      profile?.lapGEMM(
        layer: layer, .forward, transposeA: false, transposeB: false, m: outC, n: n, k: inC, calls: positions)
      for g in 0..<chunk.groups {
        let (start, samples, column) = group(g, of: chunk)
        ddp_winograd_transform_output(
          y + start * shape.outputCount, outputs + column, ld, samples, bias, outC, shape.outHeight,
          shape.outWidth, shape.kernel, tilesY, tilesX, relu, planeScratch.pointer)
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
          shape.kernel, tilesY, tilesX, planeScratch.pointer)
      }
      profile?.lap(.elementwise)
      for xi in 0..<positions {
        // dU_ξ [out, in] (+)= dM_ξ [out, n] · V_ξᵀ [n, in]
        BLAS.sgemm(
          .none, .transpose, m: outC, n: inC, k: n, alpha: 1, a: outputs + xi * chunk.outputPlane, lda: ld,
          b: inputs + xi * chunk.inputPlane, ldb: ld, beta: first == 0 ? 0 : 1,
          c: transformedWeightGradient.pointer + xi * outC * inC, ldc: inC)
      }
      profile?.lapGEMM(
        layer: layer, .weightGradient, transposeA: false, transposeB: true, m: outC, n: inC, k: n, calls: positions)
      guard let dx else { continue }
      for xi in 0..<positions {
        // dV_ξ [in, n] = U_ξᵀ [in, out] · dM_ξ [out, n], over V_ξ (no longer needed)
        BLAS.sgemm(
          .transpose, .none, m: inC, n: n, k: outC, alpha: 1, a: transformedWeights.pointer + xi * outC * inC,
          lda: inC, b: outputs + xi * chunk.outputPlane, ldb: ld, beta: 0, c: inputs + xi * chunk.inputPlane, ldc: ld)
      }
      profile?.lapGEMM(
        layer: layer, .inputGradient, transposeA: true, transposeB: false, m: inC, n: n, k: outC, calls: positions)
      for g in 0..<chunk.groups {
        let (start, samples, column) = group(g, of: chunk)
        ddp_winograd_transform_input_gradient(
          dx + start * shape.inputCount, inputs + column, ld, chunk.inputPlane, samples, shape.inChannels,
          shape.height, shape.width, shape.padding, shape.kernel, tilesY, tilesX, planeScratch.pointer)
      }
      profile?.lap(.elementwise)
    }
    if kernelParts.count == 0 {
      ddp_winograd_accumulate_weight_gradient(
        weightGradient, transformedWeightGradient.pointer, outC, inC, transformKernel)
    } else {
      kernelParts.pointer.update(repeating: 0, count: kernelParts.count)
      ddp_winograd_accumulate_weight_gradient(kernelParts.pointer, transformedWeightGradient.pointer, outC, inC, 3)
      ddp_winograd_merge_kernel_gradient(weightGradient, kernelParts.pointer, outC, shape.inChannels, shape.kernel)
    }
    profile?.lap(.elementwise)
  }
}
