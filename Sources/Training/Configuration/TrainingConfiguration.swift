import Datasets
import Diagnostics
import GradientExchange
import Layers
import Optimizers

/// Everything a training run is a function of (with the world size). Same on every rank.
///
/// Defaults are the README's ("Options and defaults"); the CLI and `cluster.yaml` override them.
/// `validate()` checks what can be checked without data; `RunPlan` checks the rest (batch vs shard size).
public struct TrainingConfiguration: Codable, Equatable, Sendable {
  public var dataset: DatasetKind = .fashionMNIST
  public var dataDirectory: String? = nil
  public var synthetic = SyntheticSpec()
  public var model: String = "mlp"
  /// Over which samples a batch norm takes its statistics in training (`--batch-norm`).
  public var batchNorm = BatchNormMode.local
  /// Training input augmentation and normalisation (`Preprocessing`): zero padding P before a random crop (0: off),
  /// a random horizontal flip, and per-channel means and standard deviations.
  public var randomCrop = 0
  public var randomFlip = false
  public var normalize: Normalization? = nil
  /// What the batches of this configuration go through (`BatchAssembler`).
  public var preprocessing: Preprocessing {
    Preprocessing(randomCrop: randomCrop, randomFlip: randomFlip, normalization: normalize)
  }
  /// Per-worker mini-batch B.
  public var batchSize: Int = 64
  /// Micro-batches per optimizer step M (gradient accumulation); global batch K·B·M.
  public var accumulate: Int = 1
  public var epochs: Int = 10
  /// When set, training stops after this many optimizer steps (epochs is then only the cosine horizon's fallback).
  public var maxSteps: Int? = nil
  /// η: the learning rate for a global batch of `baseBatch`.
  public var learningRate: Double = 0.05
  public var baseBatch: Int = 64
  public var lrScaling: LRScaling = .linear
  public var warmupEpochs: Double = 2
  public var schedule: LRDecay = .cosine
  public var momentum: Double = 0.9
  public var weightDecay: Double = 5e-4
  public var nesterov: Bool = false
  /// The update rule (`--optimizer`).
  public var optimizer: OptimizerKind = .sgd
  /// LARS's trust coefficient tr (`--trust-coefficient`); only LARS uses it.
  public var trustCoefficient: Double = 0.001
  public var seed: UInt64 = 0
  public var checkpointDirectory: String? = nil
  /// Write a checkpoint every N optimizer steps (0: only the final one).
  public var checkpointEvery: Int = 0
  public var resume: Bool = false
  /// Train anew even though --checkpoint-dir already holds checkpoints (same-step folders are replaced).
  public var startFresh: Bool = false
  /// Keep only the newest N checkpoints (nil: keep all). Older ones go only after a newer one is complete.
  public var keep: Int? = nil
  /// Seconds without progress after which a rank's watchdog ends the job (nil: automatic, see `Watchdog`).
  public var stepTimeout: Double? = nil
  public var metricsPath: String? = nil
  /// A "step" metrics event every N steps.
  public var logEvery: Int = 1
  /// OpenBLAS threads per rank (1 is as fast and far steadier when ranks share cores).
  public var blasThreads: Int = 1
  /// Verify every N steps that all ranks hold identical parameters (0: only before each checkpoint).
  public var checkConsistency: Int = 0
  /// Reduce gradients by gathering and summing in rank order (results independent of MPI's algorithm).
  public var deterministic: Bool = false
  /// Compute a K-worker run in this one process, each virtual worker's batch separately, summed in rank order:
  /// bitwise the weights of `mpirun -np K ... --deterministic`.
  public var simulateWorkers: Int? = nil
  /// Overlap the gradient all-reduce with the backward pass (`OverlappingReducer`; K > 1 only). Off: it did not
  /// measure faster at K = 2 on the 2-core host (BENCHMARKS.md).
  public var overlapCommunication = false
  /// Sum gradients through memory shared by the ranks when they all run on one host (`SharedMemoryReducer`), unless
  /// `overlapCommunication` is on (the overlap is MPI's).
  public var sharedMemoryReduction = true
  /// Across hosts (`HierarchicalReducer`): start each bucket's exchange between hosts as soon as the host has
  /// summed it, while the backward computes the layers below. nil (the default): `overlapsAcrossHosts` decides.
  public var overlapAcrossHosts: Bool? = nil
  /// What crosses hosts: fp32, or 16 bits a gradient with error feedback (`PeerExchange`).
  public var compress = GradientCompression.none
  /// Whether the exchange across hosts overlaps the backward: as asked, or by default with fp32 on the wire and
  /// not with `--compress`. Measured on 2 namespace hosts (BENCHMARKS.md "Across hosts"): with fp32 the overlap
  /// gained 54% at 1 Gbit/s and 70% at 2.5 Gbit/s (it lost 22% on the unlimited bridge, where the "link" is the
  /// kernel copying on the cores that compute); with bf16 it tied at 1 and 5 Gbit/s, gained 7% at 2.5 Gbit/s and
  /// lost 10% on the unlimited bridge: half the bytes leave little for the overlap to hide.
  public var overlapsAcrossHosts: Bool { overlapAcrossHosts ?? (compress == .none) }
  /// The options above that say how gradients meet, as the gradient exchange takes them (`Reduction.make`).
  package var reductionOptions: ReductionOptions {
    var options = ReductionOptions()
    options.deterministic = deterministic
    options.simulatedWorkers = simulateWorkers
    options.overlapsAllReduce = overlapCommunication
    options.sharedMemory = sharedMemoryReduction
    options.compression = compress
    options.overlapsAcrossHosts = overlapsAcrossHosts
    return options
  }

  /// Settings added after a checkpoint was written are absent from its `state.json`; `CheckpointState.decode` lays
  /// the file over these defaults, so every property here can be a plain value with a default.
  public init() {}

  /// Checks every setting that needs no data; the error names the option and what was expected.
  public func validate() throws(ConfigurationError) {
    func positive(_ value: Int, _ option: String) throws(ConfigurationError) {
      if value < 1 { throw ConfigurationError(option: option, expected: "a positive integer", found: "\(value)") }
    }
    try positive(batchSize, "--batch-size")
    if randomCrop < 0 {
      throw ConfigurationError(option: "--random-crop", expected: "a number of pixels >= 0", found: "\(randomCrop)")
    }
    try positive(accumulate, "--accumulate")
    try positive(baseBatch, "--base-batch")
    try positive(logEvery, "--log-every")
    try positive(blasThreads, "--blas-threads")
    if epochs < 1 && maxSteps == nil {
      throw ConfigurationError(option: "--epochs", expected: "a positive integer", found: "\(epochs)")
    }
    if epochs < 0 { throw ConfigurationError(option: "--epochs", expected: "a positive integer", found: "\(epochs)") }
    if let maxSteps, maxSteps < 1 {
      throw ConfigurationError(option: "--max-steps", expected: "a positive integer", found: "\(maxSteps)")
    }
    if !(learningRate.isFinite && learningRate > 0) {
      throw ConfigurationError(option: "--lr", expected: "a positive finite number", found: "\(learningRate)")
    }
    if !(warmupEpochs.isFinite && warmupEpochs >= 0) {
      throw ConfigurationError(
        option: "--warmup-epochs", expected: "a number of epochs >= 0 (fractions allowed)", found: "\(warmupEpochs)")
    }
    if !(momentum.isFinite && momentum >= 0 && momentum < 1) {
      throw ConfigurationError(option: "--momentum", expected: "a number in [0, 1)", found: "\(momentum)")
    }
    if !(weightDecay.isFinite && weightDecay >= 0) {
      throw ConfigurationError(option: "--weight-decay", expected: "a number >= 0", found: "\(weightDecay)")
    }
    if nesterov && momentum == 0 {
      throw ConfigurationError(
        option: "--nesterov", expected: "a momentum > 0 (as torch.optim.SGD requires)", found: "momentum 0")
    }
    if let simulateWorkers, simulateWorkers < 1 {
      throw ConfigurationError(
        option: "--simulate-workers", expected: "a number of workers >= 1", found: "\(simulateWorkers)")
    }
    if let simulateWorkers, simulateWorkers > 1, batchNorm == .sync {
      throw ConfigurationError(
        option: "--simulate-workers",
        expected: "--batch-norm local (the simulated workers run one after another, "
          + "so none can see the others' statistics mid-pass)", found: "--batch-norm sync",
        hint:
          "Run the synchronised statistics under mpirun -np \(simulateWorkers), or simulate with --batch-norm local.")
    }
    if !(trustCoefficient.isFinite && trustCoefficient > 0) {
      throw ConfigurationError(
        option: "--trust-coefficient", expected: "a positive finite number", found: "\(trustCoefficient)")
    }
    if let keep, keep < 1 {
      throw ConfigurationError(option: "--keep", expected: "a number of checkpoints >= 1", found: "\(keep)")
    }
    if let stepTimeout, !(stepTimeout.isFinite && stepTimeout > 0) {
      throw ConfigurationError(
        option: "--step-timeout", expected: "a positive number of seconds", found: "\(stepTimeout)")
    }
    do { try ModelSpec.checkSyntax(model) } catch {
      throw ConfigurationError(option: "--model", expected: "a model spec", found: "'\(model)'", hint: "\(error)")
    }
    if checkConsistency < 0 {
      throw ConfigurationError(
        option: "--check-consistency", expected: "a number of steps >= 0", found: "\(checkConsistency)")
    }
    if checkpointEvery < 0 {
      throw ConfigurationError(
        option: "--checkpoint-every", expected: "a number of steps >= 0 (0: only at the end)",
        found: "\(checkpointEvery)")
    }
    if resume && checkpointDirectory == nil {
      throw ConfigurationError(
        option: "--resume", expected: "a --checkpoint-dir to resume from", found: "no --checkpoint-dir")
    }
    if dataset == .mnist && dataDirectory == nil {
      throw ConfigurationError(
        option: "--data-dir", expected: "the directory holding MNIST's IDX files (train-images-idx3-ubyte[.gz], ...)",
        found: "nothing (--dataset mnist has no default directory)")
    }
    if case .step(let milestones) = schedule, milestones.contains(where: { !($0 > 0) }) {
      throw ConfigurationError(option: "--schedule", expected: "step milestones > 0", found: "\(schedule)")
    }
    try positive(synthetic.trainCount, "--synthetic-train")
    try positive(synthetic.testCount, "--synthetic-test")
  }
}

/// Over which samples a batch norm takes its training statistics (`--batch-norm`; README "Batch normalisation").
public enum BatchNormMode: String, Codable, CaseIterable, Sendable {
  /// Each worker's micro-batch of B samples (Goyal et al.'s choice; PyTorch DDP's default).
  case local
  /// The K·B samples of a micro-batch over all workers (PyTorch's SyncBatchNorm): K×B ≡ 1×(K·B).
  case sync
}

/// Which update rule `--optimizer` selects.
public enum OptimizerKind: String, Codable, CaseIterable, Sendable {
  case sgd
  case lars
}

/// A setting that is out of range or inconsistent. One line for the user, exit status 2.
public struct ConfigurationError: InputError, Equatable {
  /// The option (`--batch-size`) or config key (`train.batch-size`) concerned.
  public var option: String
  public var expected: String
  public var found: String
  public var hint: String?

  public init(option: String, expected: String, found: String, hint: String? = nil) {
    self.option = option
    self.expected = expected
    self.found = found
    self.hint = hint
  }

  public var description: String {
    "\(option): expected \(expected), found \(found)." + (hint.map { " \($0)" } ?? "")
  }
}
