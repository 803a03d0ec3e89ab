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

  public init(spec: ModelSpec, maxBatch: Int, gradientTailSlots: Int = 0) {
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
    gradients = FloatBuffer(count: offset + gradientTailSlots)
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

  /// The logits for `batch` samples: input is [batch, layerSizes[0]] row-major; the result is
  /// [batch, classes], valid until the next call on this model. No allocation.
  @discardableResult
  public func forward(input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
    precondition(batch >= 1 && batch <= maxBatch, "batch \(batch) outside 1...\(maxBatch)")
    let sizes = spec.layerSizes
    let layerCount = sizes.count - 1
    let p = parameters.pointer
    var x = input
    for l in 0..<layerCount {
      let y = activations[l].pointer
      if l < layerCount - 1 {
        Linear.forwardReLU(
          x: x, weight: p + weightOffsets[l], bias: p + biasOffsets[l], y: y,
          batch: batch, inFeatures: sizes[l], outFeatures: sizes[l + 1])
      } else {
        Linear.forward(
          x: x, weight: p + weightOffsets[l], bias: p + biasOffsets[l], y: y,
          batch: batch, inFeatures: sizes[l], outFeatures: sizes[l + 1])
      }
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
    let sizes = spec.layerSizes
    let layerCount = sizes.count - 1
    let logits = forward(input: input, batch: batch)
    // The logits are not needed after the loss: their gradient overwrites them.
    let result = SoftmaxCrossEntropy.forwardBackward(
      logits: logits, labels: labels, batch: batch, classes: spec.classCount,
      gradientScale: gradientScale, dLogits: logits)
    let p = parameters.pointer
    let g = gradients.pointer
    var dy = UnsafePointer(logits)
    for l in stride(from: layerCount - 1, through: 0, by: -1) {
      let x = l == 0 ? input : UnsafePointer(activations[l - 1].pointer)
      let dx: UnsafeMutablePointer<Float>? = l == 0 ? nil : deltas[l - 1].pointer
      Linear.backward(
        x: x, weight: p + weightOffsets[l], dy: dy, dWeight: g + weightOffsets[l],
        dBias: g + biasOffsets[l],
        dx: dx, batch: batch, inFeatures: sizes[l], outFeatures: sizes[l + 1])
      if let dx {
        // x is the previous layer's ReLU output: its gradient passes where x > 0.
        ReLU.backward(y: x, dy: dx, dx: dx, count: batch * sizes[l])
        dy = UnsafePointer(dx)
      }
    }
    return result
  }

  /// Forward only: the same loss sum and correct count as `accumulateGradients`, no gradient. No allocation.
  public func evaluate(input: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int)
    -> BatchResult
  {
    let logits = forward(input: input, batch: batch)
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
