import Datasets
import Foundation
import Training

/// One of the study's learning-rate policies: how η (meant for the base batch n) follows the global batch G.
public enum StudyPolicy: String, Codable, CaseIterable, Sendable {
  /// η·G/n, ramped from η over the warmup epochs (Goyal et al. 2017).
  case linearWarmup = "linear-warmup"
  /// η·G/n from the first step.
  case linear
  /// η whatever the batch.
  case none
  /// η·√(G/n), with the same warmup as `linearWarmup`.
  case sqrt
  /// LARS (You et al. 2017) with the lr of `linearWarmup` as its global lr.
  case lars
  /// LAMB (You et al. 2019; apex's FusedLAMB) with its own base lr (`StudySettings.lambLearningRate`, chosen at the
  /// base batch as LARS's trust coefficient was), scaled by √(G/n) with `sqrt`'s warmup, as the paper scales it.
  case lamb

  /// For tables and legends.
  public var label: String {
    switch self {
    case .linearWarmup: return "linear + warmup"
    case .linear: return "linear, no warmup"
    case .none: return "no scaling"
    case .sqrt: return "sqrt + warmup"
    case .lars: return "LARS (linear + warmup)"
    case .lamb: return "LAMB (sqrt + warmup)"
    }
  }

  public static let acceptedNames = allCases.map(\.rawValue).joined(separator: ", ")
}

/// Everything the study is a function of. Defaults are the full study; `quick` ones a few-minute smoke run.
public struct StudySettings: Codable, Equatable, Sendable {
  /// Speed part: the worker counts K, each training with per-worker batch `speedBatch`.
  public var workers: [Int] = [1, 2, 4]
  public var speedBatch = 64
  public var speedEpochs = 10
  /// Speed runs per K, interleaved (K=1, 2, 4, K=1, 2, 4, ...) so that load from elsewhere hits all K alike.
  public var repeats = 1
  /// Accuracy part: the global batches, each reached as K·B·M with K = `accuracyWorkers`, B = min(`microBatch`, G/K).
  public var globalBatches: [Int] = [64, 128, 256, 512, 1024, 2048, 4096]
  public var policies: [StudyPolicy] = StudyPolicy.allCases
  public var accuracyWorkers = 1
  public var microBatch = 256
  public var epochs = 10
  /// LAMB's η at the base batch (`--lamb-lr`): its steps are relative to each tensor's norm, so it does not share
  /// SGD's η.
  public var lambLearningRate = 0.005

  /// What every training shares: data, model and the optimizer's settings (the train options the study passes
  /// on, `TrainOption.InStudy.passedOn`). Batch, accumulation, epochs and the lr policy are set per run.
  public var training = TrainingConfiguration()
  /// A run within this much (absolute test accuracy) of the baseline counts as holding it.
  public var tolerance = 0.01
  /// Seconds a single training may take before it is ended and recorded as failed.
  public var runTimeout = 1800.0
  public var quick = false

  public init() {}

  /// The `--quick` defaults: a small synthetic problem, few epochs and batches; minutes on 2 cores.
  public static var quickDefaults: StudySettings {
    var settings = StudySettings()
    settings.quick = true
    settings.workers = [1, 2]
    settings.speedEpochs = 2
    settings.globalBatches = [64, 256, 1024]
    settings.epochs = 4
    settings.training.warmupEpochs = 1
    settings.training.dataset = .synthetic
    settings.runTimeout = 300
    return settings
  }

  /// How global batch G is reached in the accuracy part: K = accuracyWorkers, B = min(microBatch, G/K), M = G/(K·B).
  public func decomposition(ofGlobalBatch globalBatch: Int) -> (
    workers: Int, batchSize: Int, accumulate: Int
  ) {
    let perWorker = globalBatch / accuracyWorkers
    let batchSize = min(microBatch, perWorker)
    return (accuracyWorkers, batchSize, perWorker / batchSize)
  }

  /// The batch every policy is compared against: the base batch when studied, else the smallest one.
  public var baselineBatch: Int {
    globalBatches.contains(training.baseBatch) ? training.baseBatch : (globalBatches.min() ?? training.baseBatch)
  }

  /// Checks what needs no data; the error names the option.
  public func validate() throws(ConfigurationError) {
    func positiveList(_ values: [Int], _ option: String) throws(ConfigurationError) {
      if values.isEmpty {
        throw ConfigurationError(
          option: option, expected: "a comma-separated list", found: "nothing")
      }
      if let bad = values.first(where: { $0 < 1 }) {
        throw ConfigurationError(option: option, expected: "positive integers", found: "\(bad)")
      }
      if Set(values).count != values.count {
        throw ConfigurationError(
          option: option, expected: "distinct values",
          found: values.map(String.init).joined(separator: ","))
      }
    }
    func positive(_ value: Int, _ option: String) throws(ConfigurationError) {
      if value < 1 {
        throw ConfigurationError(option: option, expected: "a positive integer", found: "\(value)")
      }
    }
    try training.validate()
    try positiveList(workers, "--workers")
    try positiveList(globalBatches, "--global-batches")
    if policies.isEmpty {
      throw ConfigurationError(
        option: "--policies", expected: "some of \(StudyPolicy.acceptedNames)", found: "nothing")
    }
    try positive(speedBatch, "--speed-batch")
    try positive(speedEpochs, "--speed-epochs")
    try positive(repeats, "--repeats")
    try positive(accuracyWorkers, "--accuracy-workers")
    try positive(microBatch, "--micro-batch")
    try positive(epochs, "--epochs")
    if !(lambLearningRate.isFinite && lambLearningRate > 0) {
      throw ConfigurationError(
        option: "--lamb-lr", expected: "a positive finite number", found: "\(lambLearningRate)")
    }
    for batch in globalBatches {
      let (workers, batchSize, accumulate) = decomposition(ofGlobalBatch: batch)
      guard batch % accuracyWorkers == 0, workers * batchSize * accumulate == batch else {
        throw ConfigurationError(
          option: "--global-batches",
          expected:
            "batches that --accuracy-workers \(accuracyWorkers) × a micro-batch ≤ --micro-batch \(microBatch) × M reach exactly",
          found: "\(batch)", hint: "Powers of two reach exactly with the defaults.")
      }
    }
    if !(tolerance.isFinite && tolerance >= 0 && tolerance < 1) {
      throw ConfigurationError(
        option: "--tolerance", expected: "an accuracy difference in [0, 1)", found: "\(tolerance)")
    }
    if !(runTimeout.isFinite && runTimeout > 0) {
      throw ConfigurationError(
        option: "--run-timeout", expected: "a positive number of seconds", found: "\(runTimeout)")
    }
  }

  /// Parses "1,2,4" (spaces allowed); the error names the option.
  public static func parseList(_ text: String, option: String) throws(ConfigurationError) -> [Int] {
    var values: [Int] = []
    for item in text.split(separator: ",", omittingEmptySubsequences: false) {
      let trimmed = item.trimmingCharacters(in: .whitespaces)
      guard let value = Int(trimmed) else {
        throw ConfigurationError(
          option: option, expected: "a comma-separated list of integers like 1,2,4",
          found: trimmed.isEmpty ? "an empty entry in '\(text)'" : "'\(trimmed)'")
      }
      values.append(value)
    }
    return values
  }

  /// Parses "linear-warmup,lars"; the error names the option and the accepted names.
  public static func parsePolicies(_ text: String) throws(ConfigurationError) -> [StudyPolicy] {
    var policies: [StudyPolicy] = []
    for item in text.split(separator: ",", omittingEmptySubsequences: false) {
      let name = item.trimmingCharacters(in: .whitespaces).lowercased()
      guard let policy = StudyPolicy(rawValue: name) else {
        throw ConfigurationError(
          option: "--policies", expected: "names among \(StudyPolicy.acceptedNames)",
          found: "'\(name)'")
      }
      if !policies.contains(policy) { policies.append(policy) }
    }
    return policies
  }
}
