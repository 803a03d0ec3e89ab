import Tensors

/// nn.Linear: y = x·Wᵀ + b, W [out, in] row-major, b [out]. An input of any shape is used flattened (in = its
/// element count), so an MLP takes images as they come.
///
/// Shapes for a batch: x [batch, in], y [batch, out]. When the next layer is a ReLU, `Sequential` sets
/// `appliesReLU` and this layer applies it in the same pass as the bias (the ReLU's own forward then does
/// nothing; the arithmetic is the same: max(x·Wᵀ + b, 0)).
public final class Linear: Layer {
  public let inputShape: [Int]
  public let inFeatures: Int
  public let outFeatures: Int
  /// y = max(x·Wᵀ + b, 0) instead of x·Wᵀ + b (set by `Sequential` before the first forward).
  var appliesReLU = false
  private var weight: UnsafeMutablePointer<Float>!
  private var weightGradient: UnsafeMutablePointer<Float>!
  /// Offset of the weight in the model's flat buffers (the ranges `backward` reports are absolute).
  private var weightOffset = 0
  private var index = 0

  public init(inputShape: [Int], outFeatures: Int) {
    precondition(outFeatures > 0, "Linear needs a positive output size, got \(outFeatures)")
    self.inputShape = inputShape
    inFeatures = inputShape.reduce(1, *)
    self.outFeatures = outFeatures
  }

  public var outputShape: [Int] { [outFeatures] }
  public var storage: LayerStorage { .own }
  public var parameterShapes: [(suffix: String, shape: [Int])] {
    [("weight", [outFeatures, inFeatures]), ("bias", [outFeatures])]
  }
  /// On an image input (no `flatten` before it) PyTorch's Linear would not flatten it: `FlatLinear`, a Linear that
  /// does, keeps the state_dict names (`ModelSpec.moduleDefinitions`).
  public var torchExpression: String {
    (inputShape.count == 1 ? "torch.nn.Linear" : "FlatLinear") + "(\(inFeatures), \(outFeatures))"
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
    initializeUniformByFanIn(
      weight, count: outFeatures * inFeatures + outFeatures, fanIn: inFeatures, using: &generator)
  }

  public func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
    let profile = StepProfile.current
    BLAS.sgemm(
      .none, .transpose, m: batch, n: outFeatures, k: inFeatures, alpha: 1,
      a: x, lda: inFeatures, b: weight, ldb: inFeatures, beta: 0, c: y, ldc: outFeatures)
    profile?.lapGEMM(
      layer: index, .forward, transposeA: false, transposeB: true, m: batch, n: outFeatures, k: inFeatures)
    let bias = UnsafePointer(weight + outFeatures * inFeatures)
    if appliesReLU {
      ReLU.addBiasForward(bias: bias, y: y, batch: batch, features: outFeatures)
    } else {
      Elementwise.addRowVector(bias, to: y, rows: batch, columns: outFeatures)
    }
    profile?.lap(.elementwise)
  }

  /// dBias += Σ_rows dy; dW += dyᵀ·x; dx = dy·W. A weight of more than `rangeElements` gradients is computed
  /// in row blocks of at most that many (one row where a row is larger), from the last rows down, each reported
  /// as soon as it is done (the bias first), so an overlapping reducer can send it while the next block computes.
  /// Each element is the same dot product over the batch whatever the blocks, though OpenBLAS may sum it in
  /// another order for fewer rows: blocked and one-pass gradients agree to rounding, not always bit for bit.
  public func backward(
    x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, rangeElements: Int, gradientsReady: (Range<Int>) -> Void
  ) {
    let profile = StepProfile.current
    let weightCount = outFeatures * inFeatures
    let (weightStart, biasStart) = (weightOffset, weightOffset + weightCount)
    let dWeight = weightGradient!
    Elementwise.accumulateColumnSums(of: dy, rows: batch, columns: outFeatures, into: dWeight + weightCount)
    profile?.lap(.elementwise)
    // One block when the weight fits in rangeElements (reported with the bias); else equal blocks (no tiny last
    // one, which would cost a GEMM call for little work) of at most rangeElements gradients each (one row where a
    // row is larger), the bias reported first.
    let oneBlock = weightCount <= rangeElements
    var rowsPerBlock = outFeatures
    if !oneBlock {
      let blocks = (weightCount + rangeElements - 1) / rangeElements  // no overflow: rangeElements < weightCount
      rowsPerBlock = max(1, min((outFeatures + blocks - 1) / blocks, rangeElements / inFeatures))
    }
    if !oneBlock {
      gradientsReady(biasStart..<(biasStart + outFeatures))
      profile?.lap(.communication)
    }
    var upper = outFeatures
    while upper > 0 {
      let lower = max(0, upper - rowsPerBlock)
      // Rows lower..<upper of dW = columns lower..<upper of dy, transposed.
      BLAS.sgemm(
        .transpose, .none, m: upper - lower, n: inFeatures, k: batch, alpha: 1,
        a: dy + lower, lda: outFeatures, b: x, ldb: inFeatures, beta: 1, c: dWeight + lower * inFeatures,
        ldc: inFeatures)
      profile?.lapGEMM(
        layer: index, .weightGradient, transposeA: true, transposeB: false, m: upper - lower, n: inFeatures,
        k: batch)
      let end = oneBlock ? biasStart + outFeatures : weightStart + upper * inFeatures
      gradientsReady((weightStart + lower * inFeatures)..<end)
      profile?.lap(.communication)
      upper = lower
    }
    if let dx {
      BLAS.sgemm(
        .none, .none, m: batch, n: inFeatures, k: outFeatures, alpha: 1,
        a: dy, lda: outFeatures, b: weight, ldb: inFeatures, beta: 0, c: dx, ldc: inFeatures)
      profile?.lapGEMM(
        layer: index, .inputGradient, transposeA: false, transposeB: false, m: batch, n: inFeatures,
        k: outFeatures)
    }
  }

  /// The step's GEMMs as they run (the weight gradient as one block).
  public func columnFormulation(batch: Int, inputGradient: Bool) -> [StepProfile.GEMMSite] {
    var sites = [
      StepProfile.GEMMSite(
        name: "\(index).fwd", transposeA: false, transposeB: true, m: batch, n: outFeatures, k: inFeatures,
        calls: 1),
      StepProfile.GEMMSite(
        name: "\(index).dW", transposeA: true, transposeB: false, m: outFeatures, n: inFeatures, k: batch,
        calls: 1),
    ]
    if inputGradient {
      sites.append(
        StepProfile.GEMMSite(
          name: "\(index).dx", transposeA: false, transposeB: false, m: batch, n: inFeatures, k: outFeatures,
          calls: 1))
    }
    return sites
  }
}
