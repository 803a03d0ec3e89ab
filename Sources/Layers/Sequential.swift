import Tensors

/// A model as a sequence of layers, like torch.nn.Sequential: one flat parameter buffer and one flat gradient
/// buffer for all of them, every activation and its gradient preallocated, so a training step allocates nothing.
///
/// Note [Parameter layout]: the flat buffers follow PyTorch's nn.Sequential state_dict exactly: for each layer
/// with parameters, in order, "<index>.weight" then "<index>.bias", where index counts every layer (ReLU,
/// pooling and Flatten included); weights row-major in PyTorch's shapes ([out, in] for Linear, [out, in, k, k]
/// for Conv2d), contiguous in that order. Checkpoints (safetensors), LARS and the all-reduce rely on it.
///
/// Note [Activation slots]: layer i reads slot inputSlot[i] and writes slot outputSlot[i]. Slot 0 is the caller's
/// input. A layer with its own output gets a new slot; ReLU works in place on its input's slot (unless that is
/// slot 0, which it must not write); Flatten is a view of its input's slot. Each slot but 0 has a gradient
/// buffer, except the last, whose logits the loss overwrites with their gradient. In-place layers share their
/// input's gradient buffer too, so the backward of a ReLU masks it in place.
public final class Sequential {
  public let spec: ModelSpec
  public let layers: [Layer]
  /// Named views into `parameters` and `gradients`, in state_dict order (Note [Parameter layout]).
  public let views: [ParameterView]
  public let parameterCount: Int
  /// The largest batch `forward` and `evaluate` accept.
  public let maxBatch: Int
  /// The largest batch `accumulateGradients` accepts (activation gradients are sized for it).
  public let maxTrainingBatch: Int
  /// count == parameterCount.
  public let parameters: FloatBuffer
  /// count >= parameterCount: the first parameterCount elements are the gradients; the model never reads or
  /// writes the rest (callers may carry their own values after them, e.g. scalars riding an all-reduce).
  public let gradients: FloatBuffer
  /// Named views into `buffers`: the state that is not a parameter (every batch norm's running_mean and
  /// running_var), in state_dict order. Empty without batch normalisation.
  public let bufferViews: [ParameterView]
  /// count == bufferViews' total (at least 1, so it always has an address).
  public let buffers: FloatBuffer
  public let bufferCount: Int
  /// The batch-norm layers, in model order, those inside residual blocks included.
  public let batchNorms: [BatchNorm]
  /// Their state_dict prefixes: "1", "4.body.1", "4.shortcut.1".
  public let batchNormNames: [String]
  /// The dropout layers, in model order (their ordinals); evaluation turns them off.
  let dropouts: [Dropout]
  /// ε of the training loss's label smoothing (`--label-smoothing`); evaluation's loss is the plain cross-entropy.
  public var labelSmoothing: Float = 0
  /// Floats `copyBatchStatistics` writes: each batch norm's mean and unbiased variance per channel (stored: the
  /// spec's count is computed, and allocates).
  public let batchStatisticsCount: Int

  private let inputSlot: [Int]
  private let outputSlot: [Int]
  /// activations[s] for slot s ≥ 1 ([maxBatch, elements]); index 0 is unused (the input).
  private let activations: [FloatBuffer]
  /// activationGradients[s] for slot s ≥ 1; the last slot's is its activation buffer (the logits).
  private let activationGradients: [FloatBuffer]
  /// Whether layer i's backward must produce dx: some layer before it has parameters.
  private let needsInputGradient: [Bool]

  /// The layers `spec` describes, built for its shapes.
  static func makeLayers(_ spec: ModelSpec, maxBatch: Int) -> [Layer] {
    zip(spec.layers, spec.inputShapes).map { makeLayers($0, shape: $1, maxBatch: maxBatch) }
  }

  /// The layer `layer` describes, for one sample of shape `shape` (it fits: `ModelSpec` checked it).
  static func makeLayers(_ layer: LayerSpec, shape: [Int], maxBatch: Int) -> Layer {
    switch layer {
    case .linear(let out): return Linear(inputShape: shape, outFeatures: out)
    case .relu: return ReLU(inputShape: shape)
    case .flatten: return Flatten(inputShape: shape)
    case .conv2d(let out, let kernel, let stride, let padding):
      return Conv2d(inputShape: shape, outChannels: out, kernel: kernel, stride: stride, padding: padding)
    case .maxPool2d(let kernel, let stride):
      return MaxPool2d(inputShape: shape, kernel: kernel, stride: stride, maxBatch: maxBatch)
    case .batchNorm: return BatchNorm(inputShape: shape)
    case .globalAveragePool: return GlobalAveragePool(inputShape: shape)
    case .dropout(let probability): return Dropout(inputShape: shape, probability: probability)
    case .residual(let body): return ResidualBlock(inputShape: shape, body: body, maxBatch: maxBatch)
    }
  }

  /// The tensors `tensors` gives for each layer laid out one after the other in one flat buffer: their views named
  /// "<layer index>.<suffix>", where each layer's tensors start, and the total (Note [Parameter layout]).
  static func layout(_ layers: [Layer], _ tensors: (Layer) -> [(suffix: String, shape: [Int])]) -> (
    views: [ParameterView], starts: [Int], count: Int
  ) {
    var views: [ParameterView] = []
    var starts: [Int] = []
    var offset = 0
    for (index, layer) in layers.enumerated() {
      starts.append(offset)
      for (suffix, shape) in tensors(layer) {
        let count = shape.reduce(1, *)
        views.append(ParameterView(name: "\(index).\(suffix)", shape: shape, offset: offset, count: count))
        offset += count
      }
    }
    return (views, starts, offset)
  }

  /// `gradientStorage`, when given, becomes `gradients` (its first parameterCount elements zeroed): a buffer that
  /// something else placed, e.g. in memory shared with other ranks, possibly longer than the model needs.
  /// `maxTrainingBatch` defaults to `maxBatch`; a smaller one saves the activation gradients' memory when only
  /// evaluation uses large batches.
  public init(spec: ModelSpec, maxBatch: Int, maxTrainingBatch: Int? = nil, gradientStorage: FloatBuffer? = nil) {
    precondition(maxBatch >= 1, "maxBatch must be at least 1, got \(maxBatch)")
    let maxTrainingBatch = maxTrainingBatch ?? maxBatch
    precondition(maxTrainingBatch >= 1 && maxTrainingBatch <= maxBatch, "maxTrainingBatch must be in 1...maxBatch")
    self.spec = spec
    self.maxBatch = maxBatch
    self.maxTrainingBatch = maxTrainingBatch
    let layers = Self.makeLayers(spec, maxBatch: maxBatch)
    self.layers = layers

    let (views, offsets, offset) = Self.layout(layers) { $0.parameterShapes }
    precondition(offset == spec.parameterCount, "layers and spec disagree on the parameter count")
    self.views = views
    parameterCount = offset
    parameters = FloatBuffer(count: offset)
    if let gradientStorage {
      precondition(gradientStorage.count >= offset, "gradient storage smaller than the model's parameters")
      gradientStorage.pointer.update(repeating: 0, count: offset)
      gradients = gradientStorage
    } else {
      gradients = FloatBuffer(count: offset)
    }
    for (index, layer) in layers.enumerated() {
      let has = layer.parameterCount > 0
      layer.bind(
        parameters: has ? parameters.pointer + offsets[index] : nil,
        gradients: has ? gradients.pointer + offsets[index] : nil, offset: offsets[index], index: index)
    }
    let (bufferViews, bufferOffsets, bufferOffset) = Self.layout(layers) { $0.bufferShapes }
    self.bufferViews = bufferViews
    bufferCount = bufferOffset
    buffers = FloatBuffer(count: max(bufferOffset, 1))
    for (index, layer) in layers.enumerated() {
      layer.bindBuffers(layer.bufferCount > 0 ? buffers.pointer + bufferOffsets[index] : nil)
    }
    let named = layers.enumerated().flatMap { index, layer in
      layer.batchNormsInside.map { ("\(index)" + ($0.path.isEmpty ? "" : "." + $0.path), $0.layer) }
    }
    batchNorms = named.map(\.1)
    batchNormNames = named.map(\.0)
    dropouts = layers.compactMap { $0 as? Dropout }
    for (ordinal, dropout) in dropouts.enumerated() { dropout.ordinal = ordinal }
    batchStatisticsCount = batchNorms.reduce(0) { $0 + $1.batchStatistics.count }

    // Note [Activation slots].
    var inputSlot: [Int] = []
    var outputSlot: [Int] = []
    var slotSizes: [Int] = [0]
    var current = 0
    for layer in layers {
      inputSlot.append(current)
      switch layer.storage {
      case .view: break
      case .inPlace where current != 0: break
      case .own, .inPlace:
        slotSizes.append(layer.outputCount)
        current = slotSizes.count - 1
      }
      outputSlot.append(current)
    }
    precondition(current != 0, "the last layer must write an output of its own")
    self.inputSlot = inputSlot
    self.outputSlot = outputSlot
    let activations = slotSizes.map { FloatBuffer(count: maxBatch * $0) }
    let last = current
    self.activations = activations
    activationGradients = slotSizes.indices.map { slot in
      slot == last ? activations[slot] : FloatBuffer(count: slot == 0 ? 0 : maxTrainingBatch * slotSizes[slot])
    }
    var seenParameters = false
    needsInputGradient = layers.map { layer in
      defer { seenParameters = seenParameters || layer.parameterCount > 0 }
      return seenParameters
    }

    // A ReLU working in place right after a Linear or Conv2d is applied by that layer, in its bias pass.
    for index in layers.indices.dropLast() {
      guard let relu = layers[index + 1] as? ReLU, inputSlot[index + 1] == outputSlot[index + 1] else { continue }
      if let linear = layers[index] as? Linear {
        linear.appliesReLU = true
      } else if let conv = layers[index] as? Conv2d {
        conv.appliesReLU = true
      } else if let batchNorm = layers[index] as? BatchNorm {
        batchNorm.appliesReLU = true
      } else if let block = layers[index] as? ResidualBlock {
        block.appliesReLU = true
      } else {
        continue
      }
      relu.appliesForward = false
    }
    // A ReLU working in place right before a MaxPool2d leaves its backward's mask to the pooling's: the pooling
    // sends each gradient to its window's maximum only where that maximum (the ReLU's output) is > 0, which is what
    // the ReLU's mask would then keep, bit for bit. One pass over the pooling's input gradient fewer.
    for index in layers.indices.dropLast() {
      guard let relu = layers[index] as? ReLU, let pool = layers[index + 1] as? MaxPool2d,
        inputSlot[index] == outputSlot[index]
      else { continue }
      pool.rectifiesInputGradient = true
      relu.appliesBackward = false
    }
  }

  /// PyTorch's default initialisation of every layer, drawn from Xoshiro256(seed: seed, stream:
  /// RandomStream.initialization) in state_dict order: for Linear and Conv2d, weight then bias, each element
  /// ~ U(−1/√fan_in, 1/√fan_in) with fan_in = in·k·k (in for Linear).
  public func initializeParameters(seed: UInt64) {
    var generator = Xoshiro256(seed: seed, stream: RandomStream.initialization)
    for layer in layers { layer.initializeParameters(using: &generator) }
  }

  /// Zeroes gradients[0..<parameterCount]; what follows is left alone.
  public func zeroGradients() {
    gradients.pointer.update(repeating: 0, count: parameterCount)
  }

  private func slotPointer(_ slot: Int, input: UnsafePointer<Float>) -> UnsafeMutablePointer<Float> {
    slot == 0 ? UnsafeMutablePointer(mutating: input) : activations[slot].pointer
  }

  /// The logits for `batch` samples: input is [batch, spec.inputShape] row-major (NCHW for images); the result
  /// is [batch, classes], valid until the next call on this model. No allocation.
  @discardableResult
  public func forward(input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
    precondition(batch >= 1 && batch <= maxBatch, "batch \(batch) outside 1...\(maxBatch)")
    let profile = StepProfile.current
    profile?.start()
    for (index, layer) in layers.enumerated() {
      let mark = profile?.mark()
      layer.forward(
        UnsafePointer(slotPointer(inputSlot[index], input: input)),
        into: slotPointer(outputSlot[index], input: input), batch: batch)
      if let mark { profile?.chargeLayer(index, layer, backward: false, since: mark) }
    }
    return activations[outputSlot[layers.count - 1]].pointer
  }

  /// The default `rangeElements`: 2¹⁶ gradients (256 KB), so the first layer of 784-256-128-10 comes in four
  /// pieces whose all-reduce overlaps the next piece's GEMM.
  public static let defaultRangeElements = 1 << 16

  /// Forward and backward for `batch` (1...maxTrainingBatch) samples. input: [batch, spec.inputShape];
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

  /// `accumulateGradients`, calling `gradientsReady` with each range of gradients[0..<parameterCount] as soon as
  /// the backward has finished it — its final value for this call: nothing later in the call reads or writes it,
  /// so the callback may hand it to a non-blocking all-reduce at once (Note [Bucket order] in
  /// OverlappingReducer). The ranges are adjacent and descending (reverse layer order, bias before weight, a
  /// Linear weight's rows from the last down) and cover 0..<parameterCount exactly once; the last one starts at
  /// 0. A Linear weight gradient of more than `rangeElements` elements is computed and reported in row blocks
  /// of at most that size (one row where a row is larger); the blocks agree with the one-pass GEMM to rounding
  /// (OpenBLAS may sum the batch in another order for fewer rows). No allocation.
  public func accumulateGradients(
    input: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, gradientScale: Float,
    rangeElements: Int = Sequential.defaultRangeElements, gradientsReady: (Range<Int>) -> Void
  ) -> BatchResult {
    precondition(rangeElements >= 1, "rangeElements must be positive")
    precondition(batch <= maxTrainingBatch, "batch \(batch) over maxTrainingBatch \(maxTrainingBatch)")
    let logits = forward(input: input, batch: batch)
    // The logits are not needed after the loss: their gradient overwrites them.
    let result = SoftmaxCrossEntropy.forwardBackward(
      logits: logits, labels: labels, batch: batch, classes: spec.classCount, gradientScale: gradientScale,
      smoothing: labelSmoothing, dLogits: logits)
    let profile = StepProfile.current
    profile?.lap(.loss)
    for index in layers.indices.reversed() {
      let mark = profile?.mark()
      defer { if let mark { profile?.chargeLayer(index, layers[index], backward: true, since: mark) } }
      let (inSlot, outSlot) = (inputSlot[index], outputSlot[index])
      layers[index].backward(
        x: UnsafePointer(slotPointer(inSlot, input: input)), y: UnsafePointer(slotPointer(outSlot, input: input)),
        dy: activationGradients[outSlot].pointer,
        dx: needsInputGradient[index] && inSlot != 0 ? activationGradients[inSlot].pointer : nil, batch: batch,
        rangeElements: rangeElements, gradientsReady: gradientsReady)
    }
    return result
  }

  /// The step's convolution and linear arithmetic as GEMMs in the im2col formulation, with their calls for one
  /// micro-batch of `batch` samples (no input gradient for the first layer with parameters): what
  /// `ddp-train bench` measures its arithmetic ceiling on, whichever method a convolution runs.
  public func columnFormulationSites(batch: Int) -> [StepProfile.GEMMSite] {
    layers.indices.flatMap { layers[$0].columnFormulation(batch: batch, inputGradient: needsInputGradient[$0]) }
  }

  /// Forward only: the same loss sum and correct count as `accumulateGradients`, no gradient. No allocation.
  public func evaluate(input: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int) -> BatchResult {
    let logits = evaluationLogits(input: input, batch: batch)
    return SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: spec.classCount)
  }

  /// The logits as evaluation computes them (`eval`, `predict`, the test pass): batch norms normalise with their
  /// running statistics, where `forward` (training) takes the batch's. Valid until the next call. No allocation.
  public func evaluationLogits(input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
    // Not profiled: evaluation is not part of a training step. (The profile is set only in `bench`, one model
    // per process; the global is never written here otherwise, so thread-rank tests do not race on it.)
    let profile = StepProfile.current
    if profile != nil { StepProfile.current = nil }
    defer { if profile != nil { StepProfile.current = profile } }
    for batchNorm in batchNorms { batchNorm.training = false }
    for dropout in dropouts { dropout.training = false }
    defer {
      for batchNorm in batchNorms { batchNorm.training = true }
      for dropout in dropouts { dropout.training = true }
    }
    return forward(input: input, batch: batch)
  }

  // MARK: Batch statistics and running statistics (Note [Running statistics] in Trainer+Gradients.swift).

  /// Writes the last training forward's batch statistics of every batch norm (its `batchStatistics`, [2c]) to
  /// `destination`, one after the other in model order, multiplied by `weight`.
  public func copyBatchStatistics(into destination: UnsafeMutablePointer<Float>, weight: Float) {
    var offset = 0
    for batchNorm in batchNorms {
      let statistics = batchNorm.batchStatistics
      for i in 0..<statistics.count { destination[offset + i] = statistics[i] * weight }
      offset += statistics.count
    }
  }

  /// One momentum update of every batch norm's running statistics from `statistics` (laid out as
  /// `copyBatchStatistics` writes them) divided by `divisor`; each counts one more batch.
  public func updateRunningStatistics(from statistics: UnsafePointer<Float>, divisor: Float) {
    var offset = 0
    for batchNorm in batchNorms {
      batchNorm.updateRunningStatistics(statistics + offset, divisor: divisor)
      offset += batchNorm.batchStatistics.count
    }
  }

  /// Every batch norm's num_batches_tracked (they move together: one per micro-batch of a step).
  public var batchesTracked: [Int64] {
    get { batchNorms.map(\.batchesTracked) }
    set {
      precondition(newValue.count == batchNorms.count, "one count per batch norm")
      for (batchNorm, count) in zip(batchNorms, newValue) { batchNorm.batchesTracked = count }
    }
  }

  /// Where the next training micro-batch's samples sit in their step's global batch, for the layers that draw per
  /// sample (`Dropout`). Without a call, slot b is position b of step 0.
  public func setSamplePositions(_ positions: SamplePositions) {
    for dropout in dropouts { dropout.positions = positions }
  }

  /// Sums every batch norm's statistics over the ranks (`--batch-norm sync`), or nil for each rank's own.
  public func synchronizeBatchStatistics(with synchronizer: StatisticsSynchronizer?) {
    for batchNorm in batchNorms { batchNorm.synchronizer = synchronizer }
  }
}
