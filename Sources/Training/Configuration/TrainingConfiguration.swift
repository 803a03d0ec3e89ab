import Checkpoints
import Communication
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
  /// How the files are read and kept (`DataOptions`): `--layout`, `--classes`, `--class-names`, `--cache-dir`,
  /// `--data-copies`.
  public var layout: ImageLayout? = nil
  public var classes: Int? = nil
  public var classNames: String? = nil
  public var cacheDirectory: String? = nil
  public var dataCopies = DataCopies.host
  public var dataOptions: DataOptions {
    DataOptions(
      layout: layout, classCount: classes, classNamesFile: classNames, cacheDirectory: cacheDirectory,
      copies: dataCopies)
  }
  public var model: String = "mlp"
  /// Over which samples a batch norm takes its statistics in training (`--batch-norm`).
  public var batchNorm = BatchNormMode.local
  /// Training input augmentation and normalisation (`Preprocessing`): zero padding P before a random crop (0: off),
  /// a random horizontal flip, and per-channel means and standard deviations.
  public var randomCrop = 0
  public var randomFlip = false
  public var normalize: Normalization? = nil
  /// ε of the training loss's label smoothing (`--label-smoothing`), in [0, 1].
  public var labelSmoothing: Double = 0
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
  /// μ (`--momentum`), SGD and LARS only; nil until given (`resolvedMomentum`: 0.9).
  public var momentum: Double? = nil
  /// λ (`--weight-decay`); nil until given (`resolvedWeightDecay`: 0.0005 for SGD and LARS, 0.01 for AdamW and LAMB,
  /// their PyTorch and apex defaults).
  public var weightDecay: Double? = nil
  /// Nesterov momentum, SGD and LARS only; nil until given (`resolvedNesterov`: off).
  public var nesterov: Bool? = nil
  /// The update rule (`--optimizer`).
  public var optimizer: OptimizerKind = .sgd
  /// AdamW's and LAMB's β1, β2 (`--betas`); nil until given (`resolvedBetas`: 0.9, 0.999).
  public var betas: Betas? = nil
  /// AdamW's and LAMB's ε (`--eps`); nil until given (`resolvedEps`: 1e-8 for AdamW, 1e-6 for LAMB).
  public var eps: Double? = nil
  /// Weight decay on biases and batch-norm parameters too (`--bias-decay`, rank-1 tensors); off: weights only.
  public var biasDecay: Bool = true
  /// LARS's trust coefficient tr (`--trust-coefficient`); only LARS uses it.
  public var trustCoefficient: Double = 0.001
  public var seed: UInt64 = 0
  public var checkpointDirectory: String? = nil
  /// Write a checkpoint every N optimizer steps (0: only the final one).
  public var checkpointEvery: Int = 0
  public var resume: Bool = false
  /// Train anew even though --checkpoint-dir already holds checkpoints (same-step folders are replaced).
  public var startFresh: Bool = false
  /// `--resume` when DIR holds a checkpoint, a fresh start when it holds none: the one command a requeued batch job
  /// runs every time (`resolvingResumeIfAny` decides, on rank 0, before anything else).
  public var resumeIfAny: Bool = false
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

  /// Whether the optimizer is SGD or LARS (momentum, Nesterov) rather than AdamW or LAMB (betas, ε).
  public var usesMomentum: Bool { optimizer == .sgd || optimizer == .lars }
  public var resolvedMomentum: Double { momentum ?? 0.9 }
  public var resolvedNesterov: Bool { nesterov ?? false }
  public var resolvedWeightDecay: Double { weightDecay ?? (usesMomentum ? 5e-4 : 0.01) }
  public var resolvedBetas: Betas { betas ?? Betas(0.9, 0.999) }
  public var resolvedEps: Double { eps ?? (optimizer == .lamb ? 1e-6 : 1e-8) }

  /// This configuration with every default that depends on other settings written out, as state.json records it:
  /// the optimizer's own settings resolved, the others' left unset.
  public var recorded: TrainingConfiguration {
    var recorded = self
    recorded.overlapAcrossHosts = overlapsAcrossHosts
    recorded.weightDecay = resolvedWeightDecay
    if usesMomentum {
      (recorded.momentum, recorded.nesterov) = (resolvedMomentum, resolvedNesterov)
    } else {
      (recorded.betas, recorded.eps) = (resolvedBetas, resolvedEps)
    }
    return recorded
  }

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
    try validateOptimizer()
    if !(labelSmoothing >= 0 && labelSmoothing <= 1) {
      throw ConfigurationError(
        option: "--label-smoothing", expected: "a number in [0, 1] (as nn.CrossEntropyLoss takes)",
        found: "\(labelSmoothing)")
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
    if resumeIfAny && checkpointDirectory == nil {
      throw ConfigurationError(
        option: "--resume-if-any", expected: "a --checkpoint-dir to resume from", found: "no --checkpoint-dir")
    }
    if resumeIfAny && startFresh {
      throw ConfigurationError(
        option: "--resume-if-any", expected: "either --resume-if-any or --start-fresh", found: "both",
        hint: "--resume-if-any starts fresh by itself when DIR holds no checkpoint.")
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
    if [.npz, .npy, .folder].contains(dataset) && dataDirectory == nil {
      throw ConfigurationError(
        option: "--data-dir",
        expected: dataset == .npz
          ? "the .npz file (x_train, y_train, x_test, y_test)"
          : dataset == .npy
            ? "the directory of train-images.npy, train-labels.npy, test-images.npy and test-labels.npy"
            : "the directory of train/<class>/*.png and test/<class>/*.png",
        found: "nothing (--dataset \(dataset.rawValue) has no default)")
    }
    if let classes {
      guard dataset == .npz || dataset == .npy else {
        throw ConfigurationError(
          option: "--classes",
          expected: "--dataset npz or npy (the others fix their classes: 10 for IDX, one per folder for folder)",
          found: "--dataset \(dataset.rawValue)")
      }
      guard classes >= 1 && classes <= Int(Int32.max) else {
        throw ConfigurationError(option: "--classes", expected: "a number of classes >= 1", found: "\(classes)")
      }
    }
    if case .step(let milestones) = schedule, milestones.contains(where: { !($0 > 0) }) {
      throw ConfigurationError(option: "--schedule", expected: "step milestones > 0", found: "\(schedule)")
    }
    try positive(synthetic.trainCount, "--synthetic-train")
    try positive(synthetic.testCount, "--synthetic-test")
  }
}

extension TrainingConfiguration {
  /// The optimizer's settings: in range, and only those that apply to it.
  func validateOptimizer() throws(ConfigurationError) {
    if let momentum, !(momentum.isFinite && momentum >= 0 && momentum < 1) {
      throw ConfigurationError(option: "--momentum", expected: "a number in [0, 1)", found: "\(momentum)")
    }
    if let weightDecay, !(weightDecay.isFinite && weightDecay >= 0) {
      throw ConfigurationError(option: "--weight-decay", expected: "a number >= 0", found: "\(weightDecay)")
    }
    if let betas, !([betas.first, betas.second].allSatisfy { $0.isFinite && $0 >= 0 && $0 < 1 }) {
      throw ConfigurationError(option: "--betas", expected: "β1,β2 each in [0, 1)", found: "\(betas)")
    }
    if let eps, !(eps.isFinite && eps > 0) {
      throw ConfigurationError(option: "--eps", expected: "a positive finite number", found: "\(eps)")
    }
    if usesMomentum {
      for (option, given) in [("--betas", betas != nil), ("--eps", eps != nil)] where given {
        throw ConfigurationError(
          option: option, expected: "--optimizer adamw or lamb (\(optimizer.rawValue) has no moment estimates)",
          found: "--optimizer \(optimizer.rawValue)", hint: "Leave \(option) out, or choose --optimizer adamw.")
      }
      if resolvedNesterov && resolvedMomentum == 0 {
        throw ConfigurationError(
          option: "--nesterov", expected: "a momentum > 0 (as torch.optim.SGD requires)", found: "momentum 0")
      }
    } else {
      if momentum != nil || nesterov == true {
        throw ConfigurationError(
          option: momentum != nil ? "--momentum" : "--nesterov",
          expected: "--optimizer sgd or lars (\(optimizer.rawValue)'s momentum is its β1)",
          found: "--optimizer \(optimizer.rawValue)", hint: "Leave it out, or set β1 with --betas.")
      }
    }
  }
}

/// Adam's β1 and β2 (`--betas β1,β2`); a JSON array [β1, β2] in state.json.
public struct Betas: Codable, Equatable, Sendable, CustomStringConvertible {
  public var first: Double
  public var second: Double

  public init(_ first: Double, _ second: Double) {
    self.first = first
    self.second = second
  }

  /// "β1,β2", two numbers.
  public init?(parsing text: String) {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Double($0) }
    guard parts.count == 2, let first = parts[0], let second = parts[1] else { return nil }
    self.init(first, second)
  }

  public var description: String { TrainOption.format(first) + "," + TrainOption.format(second) }

  public init(from decoder: Decoder) throws {
    var container = try decoder.unkeyedContainer()
    self.init(try container.decode(Double.self), try container.decode(Double.self))
  }

  public func encode(to encoder: Encoder) throws {
    var container = encoder.unkeyedContainer()
    try container.encode(first)
    try container.encode(second)
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
  /// torch.optim.AdamW.
  case adamw
  /// NVIDIA apex's FusedLAMB.
  case lamb
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

extension TrainingConfiguration {
  /// With `--resume-if-any`: `--resume` when rank 0 finds a complete checkpoint in the checkpoint directory, a fresh
  /// start otherwise. Rank 0 decides (only it writes checkpoints; other hosts may not see the directory) and every
  /// rank takes its answer, so all ranks restore or all initialise.
  public func resolvingResumeIfAny(_ communicator: Communicator) throws -> TrainingConfiguration {
    guard resumeIfAny, let checkpointDirectory else { return self }
    // Rank 0 looks (a directory it cannot read is an input error every rank agrees on), then all take its answer.
    var found: [Int32] = [
      try collectively(communicator) {
        guard communicator.isCoordinator else { return 0 }
        return try CheckpointDirectory(path: checkpointDirectory).list().isEmpty ? 0 : 1
      }
    ]
    try communicator.broadcast(&found, root: 0)
    var resolved = self
    resolved.resume = found[0] == 1
    return resolved
  }
}
