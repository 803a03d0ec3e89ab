import Datasets
import Foundation
import Layers
import Optimizers

/// The batch arithmetic a run implies, derived once from the configuration, the world size and the data.
///
/// Invariants: globalBatch = worldSize·batchSize·accumulate <= trainCount, so stepsPerEpoch >= 1;
/// totalSteps = maxSteps ?? epochs·stepsPerEpoch; step t belongs to epoch t / stepsPerEpoch (0-based).
public struct RunPlan: Equatable, Sendable {
  public let worldSize: Int
  public let batchSize: Int
  public let accumulate: Int
  public let trainCount: Int
  public let testCount: Int
  public let model: ModelSpec
  public let sampler: DistributedSampler
  public let learningRate: LearningRatePolicy
  public let totalSteps: Int

  public var globalBatch: Int { sampler.globalBatch }
  public var stepsPerEpoch: Int { sampler.stepsPerEpoch }
  public var unusedPerEpoch: Int { sampler.unusedPerEpoch }
  /// Epochs touched by the run, the last possibly partial when --max-steps cuts it.
  public var epochCount: Int { (totalSteps + stepsPerEpoch - 1) / stepsPerEpoch }

  public init(configuration: TrainingConfiguration, worldSize: Int, rank: Int, data: DatasetPair)
    throws(ConfigurationError)
  {
    let trainCount = data.train.count
    let model: ModelSpec
    do {
      model = try ModelSpec(
        parsing: configuration.model, sampleShape: data.train.sampleShape, classCount: data.train.classCount)
    } catch {
      throw ConfigurationError(
        option: "--model",
        expected:
          "a model that fits samples of shape \(data.train.sampleShape.map(String.init).joined(separator: "x")) "
          + "and \(data.train.classCount) classes", found: "'\(configuration.model)'", hint: "\(error)")
    }
    let shard = trainCount / worldSize
    let perWorker = configuration.batchSize * configuration.accumulate
    guard perWorker <= shard else {
      let what =
        configuration.accumulate == 1
        ? "\(configuration.batchSize)" : "\(configuration.batchSize) × --accumulate \(configuration.accumulate)"
      throw ConfigurationError(
        option: "--batch-size", expected: "at most the shard size N/K = \(trainCount)/\(worldSize) = \(shard)",
        found: what, hint: "Use a smaller batch or fewer workers.")
    }
    let shape = data.train.sampleShape
    let shapeText = shape.map(String.init).joined(separator: "x")
    if configuration.preprocessing.isRandom && shape.count != 3 {
      throw ConfigurationError(
        option: configuration.randomCrop > 0 ? "--random-crop" : "--random-flip",
        expected: "image samples [channels, height, width]", found: "samples of shape \(shapeText)")
    }
    if let normalization = configuration.normalize, normalization.means.count != (shape.count == 3 ? shape[0] : 1) {
      throw ConfigurationError(
        option: "--normalize", expected: "one mean and one std per channel (\(shape.count == 3 ? shape[0] : 1))",
        found: "\(normalization.means.count) of each ('\(normalization)')")
    }
    let sampler = DistributedSampler(
      datasetCount: trainCount, worldSize: worldSize, rank: rank, batchSize: configuration.batchSize,
      accumulationSteps: configuration.accumulate, seed: configuration.seed)
    let totalSteps = configuration.maxSteps ?? configuration.epochs * sampler.stepsPerEpoch
    self.worldSize = worldSize
    self.batchSize = configuration.batchSize
    self.accumulate = configuration.accumulate
    self.trainCount = trainCount
    self.testCount = data.test.count
    self.model = model
    self.sampler = sampler
    self.totalSteps = totalSteps
    self.learningRate = LearningRatePolicy(
      baseLearningRate: configuration.learningRate, baseBatch: configuration.baseBatch,
      globalBatch: sampler.globalBatch,
      scaling: configuration.lrScaling, warmupEpochs: configuration.warmupEpochs, decay: configuration.schedule,
      stepsPerEpoch: sampler.stepsPerEpoch, totalSteps: totalSteps)
  }

  /// The batch arithmetic, for rank 0's console at start.
  public var summaryLines: [String] {
    let workers = worldSize == 1 ? "1 worker" : "\(worldSize) workers"
    var batch = "\(workers) × \(batchSize)"
    if accumulate > 1 { batch += " × \(accumulate) micro-batches" }
    return [
      "data:  N = \(trainCount) training samples, \(testCount) test samples",
      "batch: \(batch) = global batch \(globalBatch); \(stepsPerEpoch) step\(stepsPerEpoch == 1 ? "" : "s") per epoch, "
        + "\(unusedPerEpoch) sample\(unusedPerEpoch == 1 ? "" : "s") left over per epoch",
      "steps: \(totalSteps) in all (\(String(format: "%.2f", Double(totalSteps) / Double(stepsPerEpoch))) epochs)",
    ] + learningRate.summaryLines.map { "lr:    " + $0.replacingOccurrences(of: "lr policy: ", with: "") }
  }
}
