import Datasets
import Layers
import Tensors

extension Trainer {
  /// Where the scalars riding along the gradient reduction live: the gradient buffer is the model's
  /// parameterCount gradients followed by these `count` slots, which the model never sees.
  /// The scalars after the gradients in the buffer the ranks sum; after them, `plan.accumulate` slots of batch
  /// statistics (`tailCount`, Note [Running statistics]).
  enum GradientTail {
    /// This rank's loss sum / G: sums to the global mean loss.
    static let lossSum = 0
    /// This rank's correct predictions: sums to the global count.
    static let correct = 1
    /// |g_small|²/K on noise-scale steps (g_small: this rank's mean gradient): sums to the mean over ranks.
    static let smallGradientSquaredNorm = 2
    /// 1 when this rank was asked to stop (`StopRequest`): sums to the number of ranks that were.
    static let stopRequests = 3
    static let count = 4
  }

  /// Measure the noise-scale norms every this many steps (two extra passes over the gradient).
  static let noiseScaleInterval = 10

  /// Forward + backward of this rank's B·M samples of step `stepInEpoch`; gradients scaled by 1/G as they
  /// accumulate. Returns the loss sum and correct count over these samples. `reportsRanges`: the last
  /// micro-batch reports its finished gradient ranges to the reducer.
  func computeLocalGradients(
    sampler: DistributedSampler, stepInEpoch: Int, permutation: UnsafeBufferPointer<Int32>,
    indices: UnsafeMutablePointer<Int32>, nextIndices: UnsafeMutablePointer<Int32>, batch: BatchAssembler,
    reportsRanges: Bool
  ) throws -> BatchResult {
    var local = BatchResult(lossSum: 0, correct: 0)
    var clock = Clock()
    for microBatch in 0..<plan.accumulate {
      sampler.fillIndices(step: stepInEpoch, microBatch: microBatch, permutation: permutation, into: indices)
      // Each sample's random crop and flip follow its place in the epoch's permutation, not the rank.
      let positions = BatchAssembler.Positions(
        seed: configuration.seed, epoch: step / plan.stepsPerEpoch,
        first: sampler.firstPosition(step: stepInEpoch, microBatch: microBatch), stride: plan.worldSize)
      batch.assemble(
        from: data.train, indices: UnsafeBufferPointer(start: indices, count: plan.batchSize), positions: positions)
      // The rows of this sampler's next micro-batch in the epoch start on their way into the caches now and
      // arrive while this one trains (the next epoch's permutation is not known yet: its first step is not).
      let next = microBatch + 1 < plan.accumulate ? (stepInEpoch, microBatch + 1) : (stepInEpoch + 1, 0)
      if next.0 < plan.stepsPerEpoch {
        sampler.fillIndices(step: next.0, microBatch: next.1, permutation: permutation, into: nextIndices)
        batch.prefetch(from: data.train, indices: UnsafeBufferPointer(start: nextIndices, count: plan.batchSize))
      }
      // Dropout's masks follow the sample's position in the step's global batch, not the rank (`Dropout`).
      model.setSamplePositions(
        SamplePositions(
          seed: configuration.seed, step: step, first: positions.first - stepInEpoch * plan.globalBatch,
          stride: plan.worldSize))
      thisEpoch.times.data += clock.lap()
      let result = accumulateGradients(
        batch, reportsRanges: reportsRanges && microBatch == plan.accumulate - 1)
      try writeBatchStatistics(microBatch: microBatch)
      thisEpoch.times.compute += clock.lap()
      local.lossSum += result.lossSum
      local.correct += result.correct
    }
    return local
  }

  /// One micro-batch's forward and backward. With `reportsRanges` (the step's last micro-batch, not a noise-scale
  /// step) the finished gradient ranges go to the reducer as the backward produces them; earlier micro-batches
  /// still add to the same buffer, so their ranges are not final, and on noise-scale steps `writeGradientTail`
  /// reads this rank's whole gradient after the backward, which it could not while buckets are reduced in place.
  func accumulateGradients(_ batch: BatchAssembler, reportsRanges: Bool) -> BatchResult {
    let scale = 1 / Float(plan.globalBatch)
    guard reportsRanges, reducer.wantsGradientRanges else {
      return model.accumulateGradients(
        input: batch.inputs, labels: batch.labels, batch: plan.batchSize, gradientScale: scale)
    }
    let reducer = self.reducer
    return model.accumulateGradients(
      input: batch.inputs, labels: batch.labels, batch: plan.batchSize, gradientScale: scale
    ) { reducer.gradientsReady($0) }
  }

  /// Fills the scalars that ride along the gradient all-reduce (see `GradientTail`).
  func writeGradientTail(_ local: BatchResult, measureNoise: Bool) {
    let gradients = model.gradients
    let parameterCount = model.parameterCount
    gradients[parameterCount + GradientTail.lossSum] = Float(local.lossSum / Double(plan.globalBatch))
    gradients[parameterCount + GradientTail.correct] = Float(local.correct)
    var smallSquared: Float = 0
    if measureNoise {
      // The buffer holds Σ_local ∇ℓ / G; this rank's mean gradient is that times G / (B·M).
      let toMean = Double(plan.globalBatch) / Double(plan.batchSize * plan.accumulate)
      smallSquared = Float(
        Elementwise.sumOfSquares(gradients.pointer, count: parameterCount) * toMean * toMean / Double(plan.worldSize))
    }
    gradients[parameterCount + GradientTail.smallGradientSquaredNorm] = smallSquared
    gradients[parameterCount + GradientTail.stopRequests] = StopRequest.signal == nil ? 0 : 1
  }

  /// After the all-reduce on a noise-scale step (`gradients`: the summed buffer): feeds |g_small|² and |g_big|² to the estimator; metrics fields.
  func measureNoiseScale(_ gradients: FloatBuffer) -> [String: MetricValue] {
    guard var estimator = noiseScale else { return [:] }
    let small = Double(gradients[model.parameterCount + GradientTail.smallGradientSquaredNorm])
    let big = Elementwise.sumOfSquares(gradients.pointer, count: model.parameterCount)
    estimator.add(smallSquaredNorm: small, bigSquaredNorm: big)
    noiseScale = estimator
    var fields: [String: MetricValue] = ["grad_sq_small": .double(small), "grad_sq_big": .double(big)]
    if let scale = estimator.simpleNoiseScale { fields["noise_scale"] = .double(scale) }
    return fields
  }
}
