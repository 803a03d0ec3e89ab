import Foundation

/// Everything `report.json` holds; `report.md` and the charts are drawn from it alone.
public struct StudyReport: Codable, Sendable {
  public var tool = "ddp-train scaling"
  public var created: String
  /// The study's own command line.
  public var command: [String]
  public var settings: StudySettings
  public var machine: Machine
  public var speed: [SpeedRow]
  public var accuracy: AccuracySection
  public var noiseScale: NoiseScaleSection
  public var runs: [RunRecord]
  /// File names of the charts, relative to the report folder.
  public var charts: [String] = []

  public struct Machine: Codable, Sendable {
    public var cores: Int
    /// The worker counts that ran more ranks than cores (with --oversubscribe).
    public var oversubscribedWorkers: [Int]
    /// The CPU and the GEMM kernels the trainings ran on, e.g. "AMD EPYC, family 23 model 1; OpenBLAS 0.3.21, Zen
    /// kernels"; nil in reports written before it was recorded.
    public var cpu: String?
  }

  /// One training, as launched.
  public struct RunRecord: Codable, Sendable {
    public var id: String
    public var part: PlannedRun.Part
    public var policy: StudyPolicy
    public var workers: Int
    public var batchSize: Int
    public var accumulate: Int
    public var globalBatch: Int
    public var command: [String]
    public var exitStatus: Int32?
    public var seconds: Double?
    public var timedOut: Bool
    /// ok, diverged, failed or not-run.
    public var status: RunStatus
    public var metricsFile: String
    public var logFile: String
    public var errorTail: String?
    /// The host's 1-minute load average when the run started.
    public var loadAverage: Double?
  }

  /// The speed of one K (median over its repeats).
  public struct SpeedRow: Codable, Sendable {
    public var workers: Int
    public var batchSize: Int
    public var globalBatch: Int
    public var oversubscribed: Bool
    public var runIds: [String]
    public var status: RunStatus
    /// Epochs the numbers average over (the first is left out when there are several: it includes start-up).
    public var measuredEpochs: [Int]
    public var samplesPerSecond: Double?
    public var stepsPerSecond: Double?
    /// Rank 0's time per step (ms): data + compute + communication + other = step.
    public var stepMilliseconds: Double?
    public var dataMilliseconds: Double?
    public var computeMilliseconds: Double?
    public var communicationMilliseconds: Double?
    public var otherMilliseconds: Double?
    public var speedup: Double?
    public var efficiency: Double?
    public var finalTestAccuracy: Double?
    /// The host's load average as its runs started (median): above the core count, other work shared the cores.
    public var loadAverage: Double?
  }

  public struct AccuracySection: Codable, Sendable {
    public var baseline: Baseline?
    public var tolerance: Double
    public var policies: [PolicyResult]
  }

  public struct Baseline: Codable, Sendable {
    public var runId: String
    public var policy: StudyPolicy
    public var globalBatch: Int
    public var testAccuracy: Double
  }

  public struct PolicyResult: Codable, Sendable {
    public var policy: StudyPolicy
    public var label: String
    public var cells: [AccuracyCell]
    /// The largest global batch whose final accuracy is within the tolerance of the baseline.
    public var largestWithinTolerance: Int?
    /// The smallest global batch above the baseline batch that is not (accuracy has started to fall).
    public var firstBelowTolerance: Int?
  }

  /// One (policy, global batch): the training that answers it and what it gave.
  public struct AccuracyCell: Codable, Sendable {
    public var globalBatch: Int
    public var runId: String
    public var workers: Int
    public var batchSize: Int
    public var accumulate: Int
    public var datasetSize: Int?
    public var stepsPerEpoch: Int?
    public var totalSteps: Int?
    public var peakLearningRate: Double?
    public var warmupSteps: Int?
    public var status: RunStatus
    public var divergence: Divergence?
    public var epochs: [EpochPoint]
    /// The last epoch's test accuracy; nil when the run diverged to NaN/Inf or failed.
    public var finalTestAccuracy: Double?
    public var withinTolerance: Bool
  }

  public struct EpochPoint: Codable, Sendable {
    public var epoch: Int
    public var step: Int
    public var lr: Double
    public var trainLoss: Double
    public var testLoss: Double
    public var testAccuracy: Double
    public var noiseScale: Double?
  }

  public struct Divergence: Codable, Sendable {
    /// "non-finite" (NaN/Inf loss or gradient, exit status 3) or "chance" (finished, but no better than guessing).
    public var kind: String
    public var step: Int?
    public var lr: Double?
    public var loss: Double?
  }

  public struct NoiseScaleSection: Codable, Sendable {
    /// One entry per K > 1 speed run (first repeat): B_simple per epoch from b_small = B and b_big = K·B.
    public var measurements: [NoiseScaleRun]
    /// The headline: the median over the epochs of the run with the largest K.
    public var estimate: Double?
    public var estimateSource: String?
    /// linear + warmup's largest batch within tolerance and first batch below it.
    public var largestHoldingBatch: Int?
    public var breakdownBatch: Int?
  }

  public struct NoiseScaleRun: Codable, Sendable {
    public var runId: String
    public var workers: Int
    public var smallBatch: Int
    public var bigBatch: Int
    public var perEpoch: [Double?]
    public var median: Double?
    public var last: Double?
    /// How many step events carried a measurement.
    public var stepMeasurements: Int
  }
}

public enum RunStatus: String, Codable, Sendable {
  case ok
  case diverged
  case failed
  case notRun = "not-run"
}
