import Tensors

/// A multi-layer perceptron Linear → ReLU → … → Linear over one flat parameter buffer and one flat gradient
/// buffer, with every activation preallocated for `maxBatch` so a training step allocates nothing.
///
/// Note [Parameter layout]: the flat buffers follow PyTorch's nn.Sequential(Linear, ReLU, …, Linear)
/// state_dict exactly — "0.weight" [h1, in], "0.bias" [h1], "2.weight" [h2, h1], … — weights [out, in]
/// row-major, contiguous in that order. Checkpoints (safetensors) and the all-reduce rely on this order.
public final class MLP {
  public let spec: ModelSpec
  /// Named views into `parameters` and `gradients`, in state_dict order (see Note [Parameter layout]).
  public let views: [ParameterView]
  public let parameterCount: Int
  /// The largest batch `accumulateGradients` and `evaluate` accept.
  public let maxBatch: Int
  /// count == parameterCount.
  public let parameters: FloatBuffer
  /// count == parameterCount + gradientTailSlots: the tail is free space callers use to carry scalars
  /// (loss sum, correct count) along the same all-reduce; the model never reads or writes the tail.
  public let gradients: FloatBuffer

  /// For Linear layer l: the offsets of its weight and bias in the flat buffers.
  private let weightOffsets: [Int]
  private let biasOffsets: [Int]
  /// activations[l]: layer l's output, [maxBatch, layerSizes[l + 1]] (ReLU applied for hidden layers);
  /// the last holds the logits, then their gradient (in place).
  private let activations: [FloatBuffer]
  /// deltas[l]: ∂L/∂(hidden activation l), [maxBatch, layerSizes[l + 1]], for the hidden layers only.
  private let deltas: [FloatBuffer]

  /// `gradientStorage`, when given, becomes `gradients` (zeroed here): a buffer of parameterCount +
  /// gradientTailSlots floats that something else placed, e.g. in memory shared with other ranks.
  public init(spec: ModelSpec, maxBatch: Int, gradientTailSlots: Int = 0, gradientStorage: FloatBuffer? = nil) {
    precondition(maxBatch >= 1, "maxBatch must be at least 1, got \(maxBatch)")
    precondition(gradientTailSlots >= 0, "gradientTailSlots must be non-negative")
    self.spec = spec
    self.maxBatch = maxBatch
    let sizes = spec.layerSizes
    var views: [ParameterView] = []
    var weightOffsets: [Int] = []
    var biasOffsets: [Int] = []
    var offset = 0
    for l in 0..<(sizes.count - 1) {
      let (fanIn, fanOut) = (sizes[l], sizes[l + 1])
      // Linear layers sit at even positions of the Sequential, ReLUs between them.
      let index = 2 * l
      weightOffsets.append(offset)
      views.append(
        ParameterView(
          name: "\(index).weight", shape: [fanOut, fanIn], offset: offset, count: fanOut * fanIn))
      offset += fanOut * fanIn
      biasOffsets.append(offset)
      views.append(
        ParameterView(name: "\(index).bias", shape: [fanOut], offset: offset, count: fanOut))
      offset += fanOut
    }
    precondition(offset == spec.parameterCount)
    self.views = views
    self.weightOffsets = weightOffsets
    self.biasOffsets = biasOffsets
    parameterCount = offset
    parameters = FloatBuffer(count: offset)
    if let gradientStorage {
      precondition(gradientStorage.count == offset + gradientTailSlots, "gradient storage of the wrong size")
      gradientStorage.zero()
      gradients = gradientStorage
    } else {
      gradients = FloatBuffer(count: offset + gradientTailSlots)
    }
    activations = sizes.dropFirst().map { FloatBuffer(count: maxBatch * $0) }
    deltas = sizes.dropFirst().dropLast().map { FloatBuffer(count: maxBatch * $0) }
  }

  /// The view called `name` ("0.weight", …), or nil.
  public func view(named name: String) -> ParameterView? {
    views.first { $0.name == name }
  }

  /// PyTorch nn.Linear default init: every weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from
  /// Xoshiro256(seed: seed, stream: RandomStream.initialization) in `views` order, row-major.
  public func initializeParameters(seed: UInt64) {
    var generator = Xoshiro256(seed: seed, stream: RandomStream.initialization)
    let sizes = spec.layerSizes
    for l in 0..<(sizes.count - 1) {
      let bound = Float(1 / Double(sizes[l]).squareRoot())
      let start = weightOffsets[l]
      let end = biasOffsets[l] + sizes[l + 1]  // weight then bias, contiguous
      for i in start..<end {
        parameters.pointer[i] = generator.nextFloat(in: -bound, bound)
      }
    }
  }

  /// Zeroes gradients[0..<parameterCount]; the tail is left alone.
  public func zeroGradients() {
    gradients.pointer.update(repeating: 0, count: parameterCount)
  }

  /// Set by `ddp-train bench` to split the time of `forward` and `accumulateGradients` into phases; nil (the
  /// default) in training. Profile one model on one thread.
  nonisolated(unsafe) public static var profile: StepProfile?

  /// The logits for `batch` samples: input is [batch, layerSizes[0]] row-major; the result is
  /// [batch, classes], valid until the next call on this model. No allocation.
  @discardableResult
  public func forward(input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
    forward(input: input, batch: batch, profile: Self.profile)
  }

  private func forward(input: UnsafePointer<Float>, batch: Int, profile: StepProfile?)
    -> UnsafeMutablePointer<Float>
  {
    precondition(batch >= 1 && batch <= maxBatch, "batch \(batch) outside 1...\(maxBatch)")
    let sizes = spec.layerSizes
    let layerCount = sizes.count - 1
    let p = parameters.pointer
    var x = input
    profile?.start()
    for l in 0..<layerCount {
      let y = activations[l].pointer
      let (inFeatures, outFeatures) = (sizes[l], sizes[l + 1])
      // y = x·Wᵀ, then the bias (and, for hidden layers, the ReLU) in one pass over y: Linear.forward(ReLU).
      BLAS.sgemm(
        .none, .transpose, m: batch, n: outFeatures, k: inFeatures, alpha: 1,
        a: x, lda: inFeatures, b: p + weightOffsets[l], ldb: inFeatures, beta: 0, c: y,
        ldc: outFeatures)
      profile?.lapGEMM(
        layer: l, .forward, transposeA: false, transposeB: true, m: batch, n: outFeatures,
        k: inFeatures)
      if l < layerCount - 1 {
        ReLU.addBiasForward(bias: p + biasOffsets[l], y: y, batch: batch, features: outFeatures)
      } else {
        Elementwise.addRowVector(p + biasOffsets[l], to: y, rows: batch, columns: outFeatures)
      }
      profile?.lap(.elementwise)
      x = UnsafePointer(y)
    }
    return activations[layerCount - 1].pointer
  }

  /// Forward and backward for `batch` (1...maxBatch) samples. input: [batch, layerSizes[0]] row-major;
  /// labels: [batch] in 0..<classes. Adds gradientScale·Σ_i ∂ℓ_i/∂θ into gradients[0..<parameterCount], where
  /// ℓ_i is sample i's softmax cross-entropy (natural log). Returns Σ_i ℓ_i (summed in Double) and how many
  /// samples' argmax logit (first maximum on ties) equals the label. No allocation.
  public func accumulateGradients(
    input: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, gradientScale: Float
  ) -> BatchResult {
    accumulateGradients(
      input: input, labels: labels, batch: batch, gradientScale: gradientScale, rangeElements: .max
    ) { _ in }
  }

  /// The default `rangeElements`: 2¹⁶ gradients (256 KB), so the first layer of 784-256-128-10 comes in four
  /// pieces whose all-reduce overlaps the next piece's GEMM.
  public static let defaultRangeElements = 1 << 16

  /// `accumulateGradients`, calling `gradientsReady` with each range of gradients[0..<parameterCount] as soon as
  /// the backward has finished it — its final value for this call: nothing later in the call reads or writes it,
  /// so the callback may hand it to a non-blocking all-reduce at once (Note [Bucket order] in
  /// OverlappingReducer). The ranges are adjacent and descending (reverse layer order, bias before weight, a
  /// weight's rows from the last down) and cover 0..<parameterCount exactly once; the last one starts at 0.
  /// A weight gradient of more than `rangeElements` elements is computed and reported in row blocks of at most
  /// that size. Same arithmetic per element as `accumulateGradients(input:labels:batch:gradientScale:)`
  /// (each element is the same dot product over the batch; only the GEMM calls are split). No allocation.
  public func accumulateGradients(
    input: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, gradientScale: Float,
    rangeElements: Int = MLP.defaultRangeElements, gradientsReady: (Range<Int>) -> Void
  ) -> BatchResult {
    precondition(rangeElements >= 1, "rangeElements must be positive")
    let profile = Self.profile
    let sizes = spec.layerSizes
    let layerCount = sizes.count - 1
    let logits = forward(input: input, batch: batch, profile: profile)
    // The logits are not needed after the loss: their gradient overwrites them.
    let result = SoftmaxCrossEntropy.forwardBackward(
      logits: logits, labels: labels, batch: batch, classes: spec.classCount,
      gradientScale: gradientScale, dLogits: logits)
    profile?.lap(.loss)
    let p = parameters.pointer
    let g = gradients.pointer
    var dy = UnsafePointer(logits)
    for l in stride(from: layerCount - 1, through: 0, by: -1) {
      let (inFeatures, outFeatures) = (sizes[l], sizes[l + 1])
      let x = l == 0 ? input : UnsafePointer(activations[l - 1].pointer)
      let (weight, bias) = (weightOffsets[l], biasOffsets[l])
      // Linear.backward, split so finished ranges can be reported: dBias += Σ_rows dy; dW += dyᵀ·x (in row
      // blocks); dx = dy·W.
      Elementwise.accumulateColumnSums(of: dy, rows: batch, columns: outFeatures, into: g + bias)
      profile?.lap(.elementwise)
      let weightCount = outFeatures * inFeatures
      if weightCount <= rangeElements {
        BLAS.sgemm(
          .transpose, .none, m: outFeatures, n: inFeatures, k: batch, alpha: 1,
          a: dy, lda: outFeatures, b: x, ldb: inFeatures, beta: 1, c: g + weight, ldc: inFeatures)
        profile?.lapGEMM(
          layer: l, .weightGradient, transposeA: true, transposeB: false, m: outFeatures,
          n: inFeatures, k: batch)
        gradientsReady(weight..<(bias + outFeatures))
        profile?.lap(.communication)
      } else {
        gradientsReady(bias..<(bias + outFeatures))
        profile?.lap(.communication)
        // Equal blocks (no tiny last one, which would cost a GEMM call for little work).
        let blocks = (weightCount + rangeElements - 1) / rangeElements
        let rowsPerBlock = (outFeatures + blocks - 1) / blocks
        var upper = outFeatures
        while upper > 0 {
          let lower = max(0, upper - rowsPerBlock)
          // Rows lower..<upper of dW = columns lower..<upper of dy, transposed.
          BLAS.sgemm(
            .transpose, .none, m: upper - lower, n: inFeatures, k: batch, alpha: 1,
            a: dy + lower, lda: outFeatures, b: x, ldb: inFeatures, beta: 1,
            c: g + weight + lower * inFeatures,
            ldc: inFeatures)
          profile?.lapGEMM(
            layer: l, .weightGradient, transposeA: true, transposeB: false, m: upper - lower,
            n: inFeatures, k: batch)
          gradientsReady((weight + lower * inFeatures)..<(weight + upper * inFeatures))
          profile?.lap(.communication)
          upper = lower
        }
      }
      if l > 0 {
        let dx = deltas[l - 1].pointer
        BLAS.sgemm(
          .none, .none, m: batch, n: inFeatures, k: outFeatures, alpha: 1,
          a: dy, lda: outFeatures, b: p + weight, ldb: inFeatures, beta: 0, c: dx, ldc: inFeatures)
        profile?.lapGEMM(
          layer: l, .inputGradient, transposeA: false, transposeB: false, m: batch, n: inFeatures,
          k: outFeatures)
        // x is the previous layer's ReLU output: its gradient passes where x > 0.
        ReLU.backward(y: x, dy: dx, dx: dx, count: batch * inFeatures)
        profile?.lap(.elementwise)
        dy = UnsafePointer(dx)
      }
    }
    return result
  }

  /// Forward only: the same loss sum and correct count as `accumulateGradients`, no gradient. No allocation.
  public func evaluate(input: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int)
    -> BatchResult
  {
    // Not profiled: evaluation is not part of a training step.
    let logits = forward(input: input, batch: batch, profile: nil)
    return SoftmaxCrossEntropy.evaluate(
      logits: logits, labels: labels, batch: batch, classes: spec.classCount)
  }
}

extension MLP {
  /// What one batch contributed: the summed loss and the number of correct predictions.
  public struct BatchResult: Equatable, Sendable {
    /// Σ_i ℓ_i over the batch, natural log.
    public var lossSum: Double
    /// Samples whose first maximal logit is the label.
    public var correct: Int

    public init(lossSum: Double, correct: Int) {
      self.lossSum = lossSum
      self.correct = correct
    }
  }
}
