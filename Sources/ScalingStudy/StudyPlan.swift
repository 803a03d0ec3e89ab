import Foundation
import Training

/// One training the study launches: `mpirun -np workers ddp-train train <trainArguments> --metrics <file>`.
public struct PlannedRun: Codable, Equatable, Sendable {
  public enum Part: String, Codable, Sendable {
    case speed
    case accuracy
  }
  /// File-name-safe and unique, e.g. "speed-k2-r1" or "acc-g1024-linear-warmup".
  public var id: String
  public var part: Part
  public var workers: Int
  public var batchSize: Int
  public var accumulate: Int
  public var globalBatch: Int { workers * batchSize * accumulate }
  /// The speed part's repeat (1-based); 1 in the accuracy part.
  public var repeatIndex: Int
  /// The accuracy part's policy; the speed part trains with `linearWarmup`.
  public var policy: StudyPolicy
  /// Every `train` option except `--metrics` (added per run).
  public var trainArguments: [String]
}

/// The runs of a study in launch order, with identical trainings launched once.
///
/// Two entries that would train exactly the same thing share one run: at G = n every SGD policy has the lr η
/// throughout (warmup from η to η does nothing), so the four SGD policies' baselines are one training, and it is
/// the speed part's K=1 run when that has the same batch and epochs.
/// `cells` maps each (policy, global batch) of the accuracy part to the run that answers it.
public struct StudyPlan: Sendable {
  public var settings: StudySettings
  public var runs: [PlannedRun]
  /// (policy, global batch) → run id.
  public var cells: [StudyPolicy: [Int: String]]
  /// K → run ids of the speed part (one per repeat).
  public var speedRuns: [Int: [String]]

  public init(settings: StudySettings) {
    self.settings = settings
    var runs: [PlannedRun] = []
    var byKey: [String: String] = [:]
    var cells: [StudyPolicy: [Int: String]] = [:]
    var speedRuns: [Int: [String]] = [:]

    for repeatIndex in 1...settings.repeats {
      for workers in settings.workers {
        let id = "speed-k\(workers)-r\(repeatIndex)"
        let arguments = Self.trainArguments(
          settings: settings, policy: .linearWarmup, globalBatch: workers * settings.speedBatch,
          batchSize: settings.speedBatch, accumulate: 1, epochs: settings.speedEpochs)
        runs.append(
          PlannedRun(
            id: id, part: .speed, workers: workers, batchSize: settings.speedBatch, accumulate: 1,
            repeatIndex: repeatIndex, policy: .linearWarmup, trainArguments: arguments))
        speedRuns[workers, default: []].append(id)
        // The first repeat's trainings can answer accuracy cells too (K=1 at the base batch usually does).
        if repeatIndex == 1 { byKey["\(workers) " + arguments.joined(separator: " ")] = id }
      }
    }
    for policy in settings.policies {
      for globalBatch in settings.globalBatches {
        let (workers, batchSize, accumulate) = settings.decomposition(ofGlobalBatch: globalBatch)
        let arguments = Self.trainArguments(
          settings: settings, policy: policy, globalBatch: globalBatch, batchSize: batchSize,
          accumulate: accumulate,
          epochs: settings.epochs)
        let key = "\(workers) " + arguments.joined(separator: " ")
        if let existing = byKey[key] {
          cells[policy, default: [:]][globalBatch] = existing
          continue
        }
        let id = "acc-g\(globalBatch)-\(policy.rawValue)"
        byKey[key] = id
        runs.append(
          PlannedRun(
            id: id, part: .accuracy, workers: workers, batchSize: batchSize, accumulate: accumulate,
            repeatIndex: 1,
            policy: policy, trainArguments: arguments))
        cells[policy, default: [:]][globalBatch] = id
      }
    }
    self.runs = runs
    self.cells = cells
    self.speedRuns = speedRuns
  }

  public func run(id: String) -> PlannedRun? { runs.first { $0.id == id } }

  /// The `train` options of one run (without `--metrics`). Canonical, so that equal trainings compare equal:
  /// the warmup is dropped where the peak is η anyway, G = n is written as "no scaling", and LARS's trust
  /// coefficient appears only in LARS runs.
  static func trainArguments(
    settings: StudySettings, policy: StudyPolicy, globalBatch: Int, batchSize: Int, accumulate: Int,
    epochs: Int
  ) -> [String] {
    var training = settings.training
    switch policy {
    case .linearWarmup, .lars: training.lrScaling = .linear
    case .lamb: training.lrScaling = .sqrt
    case .linear: (training.lrScaling, training.warmupEpochs) = (.linear, 0)
    case .none: (training.lrScaling, training.warmupEpochs) = (.none, 0)
    case .sqrt: training.lrScaling = .sqrt
    }
    if globalBatch == training.baseBatch || training.lrScaling == .none {
      (training.lrScaling, training.warmupEpochs) = (.none, 0)
    }
    training.optimizer = policy == .lars ? .lars : policy == .lamb ? .lamb : .sgd
    if policy != .lars { training.trustCoefficient = TrainingConfiguration().trustCoefficient }
    // Each run states its optimizer's settings resolved (so the report's commands say what ran, and a run
    // planned before these defaults depended on the optimizer keeps its command); LAMB has no momentum.
    training.weightDecay = training.resolvedWeightDecay
    if policy == .lamb {
      (training.momentum, training.nesterov) = (nil, nil)
      training.learningRate = settings.lambLearningRate
    } else {
      training.momentum = training.resolvedMomentum
    }
    training.batchSize = batchSize
    training.accumulate = accumulate
    training.epochs = epochs
    training.logEvery = 10
    return ["train"] + TrainOption.arguments(for: training, always: stated) { $0.inStudy != .no }
  }

  /// The options every run's command line states even at their defaults, so a report's commands say what they ran.
  static let stated: Set<String> = [
    "dataset", "model", "batch-size", "accumulate", "epochs", "lr", "base-batch", "lr-scaling", "warmup-epochs",
    "schedule", "momentum", "weight-decay", "seed", "log-every",
  ]
}
