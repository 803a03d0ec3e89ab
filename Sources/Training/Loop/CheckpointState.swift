import Datasets
import Foundation
import Layers
import Optimizers

/// `state.json` of a checkpoint: everything besides the tensors that a resumed run needs to continue the
/// same run, plus what a person needs to know what the checkpoint is. Encoded with snake_case keys.
public struct CheckpointState: Codable, Equatable, Sendable {
  public var format = "ddp-train checkpoint"
  public var version = 1
  /// Optimizer steps completed (the next step to run).
  public var step: Int
  /// Epochs completed, and steps completed inside the unfinished epoch.
  public var epoch: Int
  public var stepInEpoch: Int
  /// Training samples consumed so far, over all workers: step · global batch. Lets a run resume at another K.
  public var samplesConsumed: Int
  public var worldSize: Int
  public var batchSize: Int
  public var accumulate: Int
  public var globalBatch: Int
  public var stepsPerEpoch: Int
  public var totalSteps: Int
  public var seed: UInt64
  /// How every random draw derives from the seed; nothing random is consumed after initialisation except
  /// the per-epoch permutation, which is recomputed from (seed, epoch), so no generator state is pending.
  public var rng: RandomState
  public var lrPolicy: LearningRatePolicy
  public var learningRateAtStep: Double
  public var model: ModelSpec
  public var dataset: DatasetIdentity
  /// Running sums of the unfinished epoch, so its train-loss line matches the uninterrupted run.
  public var epochLossSum: Double
  public var epochCorrect: Double
  public var epochSteps: Int
  /// SHA-256 of the checkpoint's other files, verified on load.
  public var files: [String: String]
  public var configuration: TrainingConfiguration

  public struct RandomState: Codable, Equatable, Sendable {
    public var generator = "xoshiro256** seeded by splitmix64"
    public var initializationStream: UInt64
    public var permutationStream: String
    public var nextPermutationEpoch: Int
  }

  public struct DatasetIdentity: Codable, Equatable, Sendable {
    public var kind: DatasetKind
    public var source: String
    public var trainCount: Int
    public var testCount: Int
    /// FNV-1a 64 of the training split, hex.
    public var fingerprint: String
  }
}

extension CheckpointState {
  /// Decodes `state.json`, tolerating checkpoints written before a setting existed: the file's `configuration`
  /// is laid over this build's defaults, so settings added later take their default values.
  public static func decode(_ bytes: [UInt8]) throws -> CheckpointState {
    guard var object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
      throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "state.json is not a JSON object"))
    }
    if let saved = object["configuration"] as? [String: Any],
      let defaults = try JSONSerialization.jsonObject(
        with: Trainer.jsonEncoder.encode(TrainingConfiguration())) as? [String: Any]
    {
      object["configuration"] = defaults.merging(saved) { _, file in file }
    }
    let merged = try JSONSerialization.data(withJSONObject: object)
    return try Trainer.jsonDecoder.decode(CheckpointState.self, from: merged)
  }
}
