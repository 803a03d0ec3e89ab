import ArgumentParser
import Datasets
import Optimizers
import Training

extension DatasetKind: ExpressibleByArgument {}
extension LRScaling: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}

/// The `train` options (docs/INTERFACE.md). Every one is optional here: unset means "the config file's value,
/// else the default of `TrainingConfiguration`". The names are also the keys of a config file's `train:`
/// section (see `ConfigFile`), which is turned into these same arguments, so the two cannot drift apart.
struct TrainOptions: ParsableArguments {
  @Option(help: "A YAML file like cluster.yaml; its `train:` section sets options, the command line overrides it.")
  var config: String?

  @Option(help: "fashion-mnist | mnist | synthetic (default fashion-mnist).")
  var dataset: DatasetKind?
  @Option(
    name: .customLong("data-dir"),
    help: "Directory of IDX files (train-images-idx3-ubyte[.gz], ...); default /usr/share/datasets/fashion-mnist.")
  var dataDir: String?
  @Option(help: "mlp (784-256-128-10, ReLU) or mlp:H1,H2,... with other hidden sizes (default mlp).")
  var model: String?

  @Option(parsing: .unconditional, help: "Per-worker mini-batch B; the global batch is K×B (default 64).")
  var batchSize: Int?
  @Option(parsing: .unconditional, help: "Micro-batches per step M; the global batch becomes K×B×M (default 1).")
  var accumulate: Int?
  @Option(parsing: .unconditional, help: "Epochs to train (default 10).")
  var epochs: Int?
  @Option(parsing: .unconditional, help: "Stop after this many optimizer steps instead of --epochs.")
  var maxSteps: Int?

  @Option(
    name: .customLong("lr"), parsing: .unconditional,
    help: "η: the learning rate for a global batch of --base-batch (default 0.05).")
  var learningRate: Double?
  @Option(parsing: .unconditional, help: "n: the global batch η is meant for (default 64).")
  var baseBatch: Int?
  @Option(help: "linear | sqrt | none: peak lr = η·(KB/n), η·sqrt(KB/n) or η (default linear).")
  var lrScaling: LRScaling?
  @Option(
    parsing: .unconditional,
    help: "Ramp the lr linearly from η to the peak over W epochs; fractions allowed, 0 = none (default 2).")
  var warmupEpochs: Double?
  @Option(help: "constant | cosine | step:E1,E2,... after warmup (default cosine, to 0 at the last step).")
  var schedule: String?
  @Option(parsing: .unconditional, help: "SGD momentum, PyTorch semantics (default 0.9).")
  var momentum: Double?
  @Option(parsing: .unconditional, help: "L2 weight decay added to the gradient, PyTorch semantics (default 0.0005).")
  var weightDecay: Double?
  @Flag(inversion: .prefixedNo, help: "Nesterov momentum (default off).")
  var nesterov: Bool?
  @Option(help: "sgd | lars: torch.optim.SGD, or LARS (per-layer trust ratio, SGD for biases) (default sgd).")
  var optimizer: OptimizerKind?
  @Option(parsing: .unconditional, help: "LARS trust coefficient tr: η_l = tr·‖w‖/(‖g‖ + wd·‖w‖) (default 0.001).")
  var trustCoefficient: Double?
  @Option(parsing: .unconditional, help: "Seed of the initial weights and of every epoch's shuffle (default 0).")
  var seed: UInt64?

  @Option(help: "Write checkpoints into DIR/step-<8 digits>/ (rank 0).")
  var checkpointDir: String?
  @Option(
    parsing: .unconditional, help: "Checkpoint every N steps, besides the final one (default 0: only the final one).")
  var checkpointEvery: Int?
  @Flag(inversion: .prefixedNo, help: "Continue from the newest complete checkpoint in --checkpoint-dir.")
  var resume: Bool?
  @Flag(
    inversion: .prefixedNo,
    help: "Train anew although --checkpoint-dir holds checkpoints (same-step folders are replaced).")
  var startFresh: Bool?
  @Option(parsing: .unconditional, help: "Keep only the newest N checkpoints (default: all).")
  var keep: Int?
  @Option(
    parsing: .unconditional,
    help: "End the job when a rank makes no progress for S seconds (default: 60, or 25 step times if longer).")
  var stepTimeout: Double?
  @Option(help: "Append JSON Lines metrics to this file (rank 0).")
  var metrics: String?
  @Option(parsing: .unconditional, help: "Write a step event to the metrics every N steps (default 1: every step).")
  var logEvery: Int?
  @Option(parsing: .unconditional, help: "OpenBLAS threads per rank (default 1).")
  var blasThreads: Int?

  @Flag(
    inversion: .prefixedNo, help: "Overlap the gradient all-reduce with the backward pass (default off; K > 1 only).")
  var overlap: Bool?
  @Flag(
    inversion: .prefixedNo,
    help: "Sum gradients through memory the ranks share when all run on one host (default on; --overlap uses MPI).")
  var sharedMemory: Bool?

  @Option(
    parsing: .unconditional,
    help: "Check every N steps that all ranks hold identical parameters (default 0: before checkpoints).")
  var checkConsistency: Int?
  @Flag(inversion: .prefixedNo, help: "Reduce gradients in a fixed rank order: results independent of MPI's algorithm.")
  var deterministic: Bool?
  @Option(
    parsing: .unconditional,
    help: "Run K workers in this one process (debugging): the weights of mpirun -np K --deterministic.")
  var simulateWorkers: Int?
  @Option(
    help: ArgumentHelp(
      "For tests: KIND@RANK:STEP, KIND one of crash, exit, kill, term, error, hang, perturb, nan, killwrite.",
      visibility: .hidden)
  )
  var injectFault: String?

  @Option(parsing: .unconditional, help: "--dataset synthetic: training samples (default 8192).")
  var syntheticTrain: Int?
  @Option(parsing: .unconditional, help: "--dataset synthetic: test samples (default 2048).")
  var syntheticTest: Int?
  @Option(parsing: .unconditional, help: "--dataset synthetic: seed of the data itself (default 2017).")
  var syntheticSeed: UInt64?

  /// The config-file keys and what each expects (for "wrong type" messages). Every key is an option above;
  /// a test checks that each one parses.
  static let configKeys: [String: String] = [
    "dataset": "one of fashion-mnist, mnist, synthetic", "data-dir": "a directory path",
    "model": "a model spec like mlp",
    "batch-size": "an integer", "accumulate": "an integer", "epochs": "an integer", "max-steps": "an integer",
    "lr": "a number", "base-batch": "an integer", "lr-scaling": "one of linear, sqrt, none",
    "warmup-epochs": "a number", "schedule": "constant, cosine or step:E1,E2,...", "momentum": "a number",
    "weight-decay": "a number", "nesterov": "true or false", "optimizer": "one of sgd, lars",
    "trust-coefficient": "a number", "seed": "a non-negative integer",
    "checkpoint-dir": "a directory path", "checkpoint-every": "an integer", "resume": "true or false",
    "start-fresh": "true or false", "keep": "an integer", "step-timeout": "a number of seconds",
    "metrics": "a file path", "log-every": "an integer", "blas-threads": "an integer", "overlap": "true or false",
    "shared-memory": "true or false",
    "check-consistency": "an integer", "inject-fault": "KIND@RANK:STEP", "deterministic": "true or false",
    "simulate-workers": "an integer",
    "synthetic-train": "an integer", "synthetic-test": "an integer", "synthetic-seed": "a non-negative integer",
  ]
  static let flagKeys: Set<String> = [
    "nesterov", "resume", "start-fresh", "deterministic", "overlap", "shared-memory",
  ]

  /// Applies the options that were given onto `configuration`.
  func apply(to configuration: inout TrainingConfiguration) throws {
    if let dataset { configuration.dataset = dataset }
    if let dataDir { configuration.dataDirectory = dataDir }
    if let model { configuration.model = model }
    if let batchSize { configuration.batchSize = batchSize }
    if let accumulate { configuration.accumulate = accumulate }
    if let epochs { configuration.epochs = epochs }
    if let maxSteps { configuration.maxSteps = maxSteps }
    if let learningRate { configuration.learningRate = learningRate }
    if let baseBatch { configuration.baseBatch = baseBatch }
    if let lrScaling { configuration.lrScaling = lrScaling }
    if let warmupEpochs { configuration.warmupEpochs = warmupEpochs }
    if let schedule {
      do { configuration.schedule = try LRDecay(parsing: schedule) } catch {
        throw ConfigurationError(
          option: "--schedule", expected: "constant, cosine or step:E1,E2,... (epochs)", found: "'\(schedule)'")
      }
    }
    if let momentum { configuration.momentum = momentum }
    if let weightDecay { configuration.weightDecay = weightDecay }
    if let nesterov { configuration.nesterov = nesterov }
    if let optimizer { configuration.optimizer = optimizer }
    if let trustCoefficient { configuration.trustCoefficient = trustCoefficient }
    if let seed { configuration.seed = seed }
    if let checkpointDir { configuration.checkpointDirectory = checkpointDir }
    if let checkpointEvery { configuration.checkpointEvery = checkpointEvery }
    if let resume { configuration.resume = resume }
    if let startFresh { configuration.startFresh = startFresh }
    if let keep { configuration.keep = keep }
    if let stepTimeout { configuration.stepTimeout = stepTimeout }
    if let metrics { configuration.metricsPath = metrics }
    if let logEvery { configuration.logEvery = logEvery }
    if let blasThreads { configuration.blasThreads = blasThreads }
    if let overlap { configuration.overlapCommunication = overlap }
    if let sharedMemory { configuration.sharedMemoryReduction = sharedMemory }
    if let checkConsistency { configuration.checkConsistency = checkConsistency }
    if let deterministic { configuration.deterministic = deterministic }
    if let simulateWorkers { configuration.simulateWorkers = simulateWorkers }
    if let injectFault { configuration.injectFault = try FaultInjection(parsing: injectFault) }
    if let syntheticTrain { configuration.synthetic.trainCount = syntheticTrain }
    if let syntheticTest { configuration.synthetic.testCount = syntheticTest }
    if let syntheticSeed { configuration.synthetic.seed = syntheticSeed }
  }

  /// Defaults ← config file ← command line, validated. Throws input errors only (exit 2).
  func resolveConfiguration() throws -> TrainingConfiguration {
    var configuration = TrainingConfiguration()
    if let config {
      let file = try ConfigFile.load(path: config)
      let fromFile = try file.trainOptions()
      try fromFile.apply(to: &configuration)
    }
    try apply(to: &configuration)
    try configuration.validate()
    return configuration
  }
}
