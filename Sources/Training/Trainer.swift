import Benchmarks
import Checkpoints
import Communication
import Datasets
import Foundation
import Layers
import Optimizers
import Tensors

/// What a finished run reports.
public struct TrainingSummary: Sendable {
  public var steps: Int
  public var trainLoss: Double
  public var testLoss: Double
  public var testAccuracy: Double
  public var elapsedSeconds: Double
  public var checkpoint: String?
  /// Set when the run stopped early on request (`StopRequest`): what asked, e.g. "SIGTERM".
  public var stoppedBy: String?
}

/// Data-parallel SGD over a `Communicator`: every rank runs this same loop on its shard of each global batch.
///
/// One optimizer step t (0-based) of epoch e = t / stepsPerEpoch (`run`):
///   1. gather: each rank assembles its B·M samples of the epoch's shared permutation (docs/INTERFACE.md,
///      "Data order");
///   2. local gradients: forward + backward, gradients scaled by 1/(K·B·M) while accumulating, so the summed
///      gradient is the global MEAN gradient (the loss is normalised by the whole global batch);
///   3. reduce: the rank's flat gradient buffer, whose tail also carries the loss sum and the correct count, is
///      summed over the ranks by the run's `GradientReducer` (shared memory, MPI, or the simulated workers);
///   4. update: the same SGD step on every rank, with lr(t) a pure function of t. Parameters stay identical on
///      every rank because they start identical (rank 0's are broadcast) and receive identical updates;
///   5. bookkeeping: metrics, progress, the end of an epoch (evaluation), consistency checks and checkpoints.
public final class Trainer {
  // What the run is: settings, batch arithmetic, data, and the world it runs in.
  public let configuration: TrainingConfiguration
  /// Test-only misbehaviour (`--inject-fault`), kept apart from the configuration.
  let faults: FaultInjection?
  public let plan: RunPlan
  let data: DatasetPair
  let communicator: Communicator
  /// One sampler per worker this process computes (several with --simulate-workers).
  let workerSamplers: [DistributedSampler]

  // The model, its update rule, and how gradients meet across ranks.
  public let model: Sequential
  let optimizer: any Optimizer
  let reducer: GradientReducer
  /// The same two, when the reducer can leave the parameters' last addition to an optimizer that makes it in its
  /// update (`AddendReducer`, `TwoAddendOptimizer`); found once here, not cast at every step.
  let addendPath: (reducer: AddendReducer, optimizer: TwoAddendOptimizer)?

  /// Where the scalars riding along the gradient reduction live: the gradient buffer is the model's
  /// parameterCount gradients followed by these `count` slots, which the model never sees.
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
  public static let evaluationBatch = 500
  /// Measure the noise-scale norms every this many steps (two extra passes over the gradient).
  static let noiseScaleInterval = 10

  // Where the run goes: rank 0's console, metrics and checkpoints.
  let console: Console
  var metrics: MetricsLog?
  let checkpoints: CheckpointDirectory?
  var lastCheckpoint: String?
  /// Rank 0's hold on the checkpoint directory (`CheckpointLock`), kept until the process ends.
  var checkpointLock: CheckpointLock?
  /// FNV-1a of the training split, computed once (state.json and the start-up agreement use it).
  lazy var trainFingerprint: UInt64 = data.train.fingerprint

  // Progress: the state a checkpoint carries besides the tensors.
  /// The next optimizer step to run; equals the number of steps completed.
  var step = 0
  /// Running sums for the current epoch's train loss and accuracy (restored on resume).
  var epochLossSum = 0.0
  var epochCorrect = 0.0
  var epochSteps = 0

  // Instruments.
  var watchdog: Watchdog?
  /// Prints a watchdog's message (the job is aborted right after).
  var reportStall: @Sendable (String) -> Void = { message in
    FileHandle.standardError.write(Data(("ddp-train: error: " + message + "\n").utf8))
  }
  /// Where this epoch's step time went (seconds, this rank).
  var times = StepTimes()
  /// How this run sums gradients across ranks, in words (the run header, `ddp-train bench`).
  /// Why the reduction is not the one a user might expect (a flat fallback across hosts, an unused --compress).
  let reductionNote: String?
  /// The bytes this rank handed to other hosts in the last step (the sum in two levels only; nil otherwise).
  public var bytesSentAcrossHostsLastStep: Int? { (reducer as? HierarchicalReducer)?.bytesSentLastStep }
  /// Two ranks on one host: how many steps used each exchange (Note [Two exchanges for two cores]), and the last
  /// round trip between the two cores they were chosen from, in ns.
  public var pairExchangeSteps: (streamed: Int, sharded: Int, roundTripNanoseconds: Double)? {
    guard let pair = reducer as? SharedMemoryPairReducer else { return nil }
    return (pair.steps[.streamed] ?? 0, pair.steps[.sharded] ?? 0, pair.lastRoundTripNanoseconds)
  }
  public var reductionName: String { reducer.name + (reductionNote.map { " (\($0))" } ?? "") }
  /// The length of the buffer a step reduces: the parameters' gradients and the scalar tail.
  public var reducedCount: Int { model.parameterCount + GradientTail.count }
  /// Set by `ddp-train bench` before `run`: when each step's gradient collective began and ended on this rank.
  public var collectiveTimestamps: CollectiveTimestamps?
  /// The gradient noise scale, when there are two batch sizes to compare (K·B·M > B·M).
  var noiseScale: GradientNoiseScale?

  /// Builds the model and optimizer; throws ConfigurationError for settings the data makes impossible.
  /// `faults` (tests only, `--inject-fault`) makes one rank misbehave at one step; it is not part of the
  /// configuration a run records.
  public init(
    configuration: TrainingConfiguration, communicator: Communicator, data: DatasetPair, console: Console,
    faults: FaultInjection? = nil
  ) throws {
    self.configuration = configuration
    var faults = faults
    faults?.markerDirectory = configuration.checkpointDirectory
    self.faults = faults
    self.communicator = communicator
    self.data = data
    self.console = console
    if let simulated = configuration.simulateWorkers, communicator.size > 1 {
      throw ConfigurationError(
        option: "--simulate-workers", expected: "a single process (no mpirun, or mpirun -np 1)",
        found: "\(communicator.size) ranks simulating \(simulated) workers each")
    }
    let worldSize = configuration.simulateWorkers ?? communicator.size
    plan = try RunPlan(configuration: configuration, worldSize: worldSize, rank: communicator.rank, data: data)
    // The workers this process computes: itself, or every virtual worker of a simulated world.
    let plan = self.plan
    workerSamplers = (configuration.simulateWorkers == nil ? [communicator.rank] : Array(0..<worldSize)).map { rank in
      DistributedSampler(
        datasetCount: plan.trainCount, worldSize: worldSize, rank: rank, batchSize: plan.batchSize,
        accumulationSteps: plan.accumulate, seed: configuration.seed)
    }
    // The shared-memory and hierarchical reducers, when they apply, place the gradient buffer themselves
    // (collective).
    let reducedCount = plan.model.parameterCount + GradientTail.count
    let placed =
      configuration.simulateWorkers == nil
      ? try Self.makeHostAwareReducer(
        configuration: configuration, communicator: communicator, count: reducedCount,
        parameterCount: plan.model.parameterCount)
      : nil
    model = Sequential(
      spec: plan.model, maxBatch: max(plan.batchSize, Self.evaluationBatch), maxTrainingBatch: plan.batchSize,
      gradientStorage: placed?.gradients ?? FloatBuffer(count: reducedCount))
    switch configuration.optimizer {
    case .sgd:
      optimizer = SGD(
        parameterCount: model.parameterCount,
        options: SGDOptions(
          momentum: configuration.momentum, weightDecay: configuration.weightDecay, nesterov: configuration.nesterov))
    case .lars:
      optimizer = LARS(
        parameterCount: model.parameterCount, layers: model.views,
        options: LARSOptions(
          momentum: configuration.momentum, weightDecay: configuration.weightDecay,
          trustCoefficient: configuration.trustCoefficient, nesterov: configuration.nesterov))
    }
    checkpoints = configuration.checkpointDirectory.map { path in
      var directory = CheckpointDirectory(path: path)
      directory.fileWrittenHook = faults?.checkpointHook
      return directory
    }
    reductionNote = placed?.note
    if configuration.simulateWorkers != nil {
      reducer = SimulatedWorkersReducer(count: reducedCount)
    } else {
      reducer =
        placed?.reducer
        ?? Self.makeReducer(
          configuration: configuration, communicator: communicator, gradients: model.gradients,
          parameterCount: model.parameterCount)
    }
    if let pair = reducer as? AddendReducer, let twoAddend = optimizer as? TwoAddendOptimizer {
      addendPath = (pair, twoAddend)
    } else {
      addendPath = nil
    }
    let localBatch = plan.batchSize * plan.accumulate
    if plan.globalBatch > localBatch {
      noiseScale = GradientNoiseScale(smallBatch: localBatch, bigBatch: plan.globalBatch)
    }
  }

  /// Checks, on rank 0, everything about the output locations that can fail before anything is written,
  /// and loads the checkpoint to resume from. Errors are input errors (exit 2). Writes nothing.
  func prepareOutputs() throws -> LoadedCheckpoint? {
    guard communicator.isCoordinator else { return nil }
    if let metricsPath = configuration.metricsPath { try Self.validateMetricsPath(metricsPath) }
    guard let checkpoints else { return nil }
    try checkpoints.validateWritable()
    // One job per directory. Locked first when the lock file exists (so a second job is told so, whatever else
    // it asks), else once every check has passed; either way nothing is written before then (an input error
    // leaves the directory as it was).
    checkpointLock = try CheckpointLock.acquire(checkpoints, create: false)
    var resumeFrom: LoadedCheckpoint?
    if configuration.resume {
      let checkpoint = try loadNewestCheckpoint(from: checkpoints)
      try checkResumable(checkpoint)
      resumeFrom = checkpoint
    } else if !configuration.startFresh, let newest = try checkpoints.list().first {
      throw CheckpointError(
        path: checkpoints.path,
        problem: "already holds checkpoints of a run (newest \((newest.path as NSString).lastPathComponent))",
        hint:
          "Pass --resume to continue it, --start-fresh to train anew (replacing same-step folders), or another --checkpoint-dir."
      )
    }
    if checkpointLock == nil { checkpointLock = try CheckpointLock.acquire(checkpoints, create: true) }
    let since = ISO8601DateFormatter().string(from: Date())
    checkpointLock?.record(
      owner: "pid \(getpid()) on \(ProcessInfo.processInfo.hostName) since \(since): "
        + CommandLine.arguments.map(shellQuoted).joined(separator: " "))
    return resumeFrom
  }

  /// What the loop carries from step to step besides the checkpointed progress.
  struct LoopState {
    let trainStart = Date()
    /// The step this process started from (0, or the resumed checkpoint's), for the run's ETA.
    let startStep: Int
    var epochStart = Date()
    /// The host's CPU counters when the epoch started (nil where /proc/stat cannot be read), for its steal.
    var epochCPUTimes = CPUTimes.current()
    var epochSamples = 0
    var lastEvaluation = (loss: Double.nan, accuracy: Double.nan)
    var lastTrainLoss = Double.nan
    /// The typical step time (median of steps 4-23) sets the automatic watchdog timeout.
    var firstStepDurations: [Double] = []
    var permutation: [Int32] = []
    var permutationEpoch = -1
  }

  /// Per-step scratch, allocated once: the sample indices and the assembled batch.
  struct BatchScratch {
    let indices: UnsafeMutablePointer<Int32>
    /// The next micro-batch's indices, whose rows are prefetched while this one trains.
    let nextIndices: UnsafeMutablePointer<Int32>
    let batch: BatchAssembler
  }

  /// Runs the whole training; returns the final evaluation. Collective: every rank must call it.
  public func run() throws -> TrainingSummary {
    BLAS.setThreadCount(configuration.blasThreads)
    try verifyRanksShareConfiguration()
    // Setup can fail with an input error on rank 0 only (checkpoint or metrics path): agree before going on.
    let resumeFrom = try collectively(communicator) { try prepareOutputs() }
    model.initializeParameters(seed: configuration.seed)
    try restoreOrBroadcastInitialState(resumeFrom)
    if communicator.isCoordinator, let path = configuration.metricsPath { metrics = try MetricsLog(path: path) }
    printHeader(resumedFrom: resumeFrom)
    try logRunEvent()

    let watchdog = Watchdog(communicator: communicator, timeout: configuration.stepTimeout, report: reportStall)
    if communicator.size > 1 { watchdog.setHosts(try RankHosts.gather(communicator)) }
    self.watchdog = watchdog
    watchdog.start()
    ExitGuard.arm(communicator)
    defer {
      watchdog.stop()
      ExitGuard.disarm()
    }
    let scratch = BatchScratch(
      indices: .allocate(capacity: plan.batchSize), nextIndices: .allocate(capacity: plan.batchSize),
      batch: BatchAssembler(featureCount: data.train.featureCount, maxBatch: plan.batchSize))
    defer {
      scratch.indices.deallocate()
      scratch.nextIndices.deallocate()
    }
    let progress = ProgressLine(
      console: console, stepsPerEpoch: plan.stepsPerEpoch, totalSteps: plan.totalSteps, startStep: step)
    var state = LoopState(startStep: step)

    while step < plan.totalSteps {
      let stepStart = Date()
      watchdog.beat(step: step, phase: .compute("computing its gradient"))
      ExitGuard.update(step: step)
      let epoch = step / plan.stepsPerEpoch
      if epoch != state.permutationEpoch {
        state.permutation = DistributedSampler.permutation(
          count: plan.trainCount, seed: configuration.seed, epoch: epoch)
        state.permutationEpoch = epoch
      }
      let measureNoise = noiseScale != nil && step % Self.noiseScaleInterval == 0
      // 1-2. Every worker this process computes: gather its samples, forward + backward into the gradient buffer.
      try state.permutation.withUnsafeBufferPointer { order in
        try computeWorkerGradients(permutation: order, scratch: scratch, measureNoise: measureNoise)
      }
      // 3. The sum over the ranks: mean gradient, global mean loss, global correct count (and noise-scale norms),
      // and whether any rank was asked to stop.
      let reduced = try reduceGradients(measureNoise: measureNoise)
      let gradients = reduced.sums
      let stopRequested = gradients[model.parameterCount + GradientTail.stopRequests] > 0
      // 4. The update, identical on every rank.
      let (loss, learningRate, noiseFields) = try update(with: reduced, measureNoise: measureNoise)
      // 5. Bookkeeping.
      try recordStep(
        loss: loss, correct: Double(gradients[model.parameterCount + GradientTail.correct]),
        learningRate: learningRate, noiseFields: noiseFields, state: &state)
      step += 1
      if state.firstStepDurations.count < 24 {
        state.firstStepDurations.append(Date().timeIntervalSince(stepStart))
        if state.firstStepDurations.count == 24 {
          watchdog.setTypicalStep(seconds: state.firstStepDurations.dropFirst(4).sorted()[10])
        }
      }
      progress.update(
        epoch: epoch, stepInEpoch: step - epoch * plan.stepsPerEpoch, step: step,
        loss: epochLossSum / Double(epochSteps))
      if step % plan.stepsPerEpoch == 0 || step == plan.totalSteps {
        progress.clear()
        try finishEpoch(epoch: epoch, learningRate: learningRate, state: &state)
      }
      let checkpointed = try checkAndCheckpoint()
      if stopRequested && step < plan.totalSteps {
        progress.clear()
        return try stopOnRequest(checkpointed: checkpointed, state: state)
      }
    }
    if plan.totalSteps == step && epochSteps == 0 && state.lastEvaluation.loss.isNaN {
      // Resumed at the very end: nothing trained in this run, still report the model's quality.
      state.lastEvaluation = try evaluate(data.test)
    }
    let elapsed = Date().timeIntervalSince(state.trainStart)
    console.line(
      String(
        format: "done: %d steps in %.1f s; test accuracy %.4f, test loss %.4f", step, elapsed,
        state.lastEvaluation.accuracy, state.lastEvaluation.loss))
    try communicator.barrier()
    return TrainingSummary(
      steps: step, trainLoss: state.lastTrainLoss, testLoss: state.lastEvaluation.loss,
      testAccuracy: state.lastEvaluation.accuracy, elapsedSeconds: elapsed, checkpoint: lastCheckpoint)
  }

  /// Steps 1-2 for each worker this process computes (one, or K with --simulate-workers): zero the gradients,
  /// gather and run its micro-batches, write the scalar tail, and hand the buffer to the reducer.
  func computeWorkerGradients(
    permutation: UnsafeBufferPointer<Int32>, scratch: BatchScratch, measureNoise: Bool
  ) throws {
    let stepInEpoch = step % plan.stepsPerEpoch
    for (worker, sampler) in workerSamplers.enumerated() {
      model.zeroGradients()
      if worker == 0 {
        try faults?.trigger(
          rank: communicator.rank, step: step, parameters: model.parameters.pointer, gradients: model.gradients.pointer)
      }
      let local = computeLocalGradients(
        sampler: sampler, stepInEpoch: stepInEpoch, permutation: permutation, indices: scratch.indices,
        nextIndices: scratch.nextIndices, batch: scratch.batch, reportsRanges: !measureNoise)
      writeGradientTail(local, measureNoise: measureNoise)
      reducer.workerFinished(worker, gradients: model.gradients)
    }
  }

  /// Step 3: the reducer's sum of every rank's gradient buffer, timed and watched. Where the reducer and the
  /// optimizer can (`AddendReducer`, `TwoAddendOptimizer`), the parameters' last addition is left to the update;
  /// not on a noise-scale step, which needs the summed gradient's norm first.
  func reduceGradients(measureNoise: Bool) throws -> ReducedGradients {
    watchdog?.beat(step: step, phase: .collective("gradient all-reduce"))
    var clock = Clock()
    let entry = collectiveTimestamps == nil ? 0 : CollectiveTimestamps.now()
    let reduced: ReducedGradients
    if !measureNoise, let pair = addendPath?.reducer {
      let (sums, addends) = try pair.finishLeavingParameterSum(model.gradients, parameterCount: model.parameterCount)
      reduced = ReducedGradients(sums: sums, addends: addends)
    } else {
      reduced = ReducedGradients(sums: try reducer.finish(model.gradients), addends: nil)
    }
    times.allReduce += clock.lap()
    collectiveTimestamps?.record(step: step, entry: entry, exit: CollectiveTimestamps.now())
    return reduced
  }

  /// Step 4: the optimizer step with lr(step) on the summed `gradients`. Returns the global mean loss, the lr and
  /// the noise-scale metrics fields; throws `diverged` (nothing saved) when the loss or a gradient is not finite.
  func update(with reduced: ReducedGradients, measureNoise: Bool) throws -> (
    loss: Double, learningRate: Double, noiseFields: [String: MetricValue]
  ) {
    watchdog?.beat(step: step, phase: .compute("updating its parameters"))
    var clock = Clock()
    let gradients = reduced.sums
    let loss = Double(gradients[model.parameterCount + GradientTail.lossSum])
    let learningRate = plan.learningRate.learningRate(atStep: step)
    var noiseFields: [String: MetricValue] = [:]
    if measureNoise && loss.isFinite { noiseFields = measureNoiseScale(gradients) }
    // The update also tells whether every gradient was finite.
    let finite: Bool
    if !loss.isFinite {
      finite = false
    } else if let (first, second) = reduced.addends, let optimizer = addendPath?.optimizer {
      finite = optimizer.step(
        parameters: model.parameters.pointer, gradients: first, plus: second, learningRate: Float(learningRate))
    } else {
      precondition(reduced.addends == nil, "an optimizer that cannot add the gradient's addends was handed them")
      finite = optimizer.step(
        parameters: model.parameters.pointer, gradients: gradients.pointer, learningRate: Float(learningRate))
    }
    times.other += clock.lap()
    guard finite else {
      // Every rank sees the same reduced values: rank 0 reports, the others end silently with it. The
      // parameters are garbage from here on; nothing is saved.
      guard communicator.isCoordinator else { throw PeerFailure(rank: 0, exitCode: 3) }
      try? metrics?.append("diverged", ["step": .int(step), "lr": .double(learningRate), "loss": .double(loss)])
      throw TrainingError.diverged(step: step, learningRate: learningRate, loss: loss, checkpoint: lastCheckpoint)
    }
    return (loss, learningRate, noiseFields)
  }

  /// Step 5, per step: the epoch's running sums and the metrics `step` event (every --log-every steps).
  func recordStep(
    loss: Double, correct: Double, learningRate: Double, noiseFields: [String: MetricValue], state: inout LoopState
  ) throws {
    epochLossSum += loss
    epochCorrect += correct
    epochSteps += 1
    state.epochSamples += plan.globalBatch
    if step % configuration.logEvery == 0 {
      try metrics?.append(
        "step",
        [
          "step": .int(step), "epoch": .int(step / plan.stepsPerEpoch + 1), "lr": .double(learningRate),
          "loss": .double(loss),
        ]
        .merging(noiseFields) { first, _ in first })
    }
  }

  /// Step 5, at the end of an epoch (or of a run cut by --max-steps): evaluate, report, reset the epoch's sums.
  func finishEpoch(epoch: Int, learningRate: Double, state: inout LoopState) throws {
    let trainSeconds = Date().timeIntervalSince(state.epochStart)
    // Only the coordinator reports it: nil on the other ranks and where /proc/stat cannot be read; an epoch
    // shorter than the counters' tick (10 ms) stole nothing.
    let steal =
      communicator.isCoordinator
      ? state.epochCPUTimes.flatMap { start in CPUTimes.current().map { $0.stealFraction(since: start) ?? 0 } } : nil
    state.lastTrainLoss = epochLossSum / Double(max(epochSteps, 1))
    let trainAccuracy = epochCorrect / Double(max(epochSteps, 1) * plan.globalBatch)
    state.lastEvaluation = try evaluate(data.test)
    let samplesPerSecond = Double(state.epochSamples) / max(trainSeconds, 1e-9)
    try logEpoch(
      epoch: epoch + 1, learningRate: learningRate, trainLoss: state.lastTrainLoss, trainAccuracy: trainAccuracy,
      evaluation: state.lastEvaluation, samplesPerSecond: samplesPerSecond, epochSeconds: trainSeconds, steal: steal,
      elapsed: Date().timeIntervalSince(state.trainStart), partial: step % plan.stepsPerEpoch != 0,
      runSecondsLeft: remainingSeconds(
        done: step - state.startStep, total: plan.totalSteps - state.startStep,
        seconds: Date().timeIntervalSince(state.trainStart)))
    times = StepTimes()
    epochLossSum = 0
    epochCorrect = 0
    epochSteps = 0
    state.epochSamples = 0
    state.epochStart = Date()
    state.epochCPUTimes = communicator.isCoordinator ? CPUTimes.current() : nil
  }

  /// Step 5, after the step count moved on: the parameter consistency check and the checkpoint, when due.
  /// Returns whether a checkpoint of this step was written (the same answer on every rank).
  @discardableResult
  func checkAndCheckpoint() throws -> Bool {
    let periodic = configuration.checkpointEvery > 0 && step % configuration.checkpointEvery == 0
    let checkpointNow = checkpoints != nil && (periodic || step == plan.totalSteps)
    let checkNow = configuration.checkConsistency > 0 && step % configuration.checkConsistency == 0
    if checkNow || checkpointNow || step == plan.totalSteps { try verifyRanksAgree() }
    if checkpointNow, let checkpoints {
      watchdog?.beat(step: step, phase: .compute("writing a checkpoint"))
      try saveCheckpoint(to: checkpoints)
    }
    return checkpointNow
  }

  /// Every rank was told in this step's reduction that some rank was asked to stop (`StopRequest`): all stop
  /// after the same step. The parameters are checked, rank 0 checkpoints this step (unless it just did), the
  /// metrics get a `stopped` event and rank 0 prints how to continue. Collective.
  func stopOnRequest(checkpointed: Bool, state: LoopState) throws -> TrainingSummary {
    let asker = StopRequest.signal.map(StopRequest.name) ?? "a signal to another rank"
    if !checkpointed {
      try verifyRanksAgree()
      if let checkpoints {
        watchdog?.beat(step: step, phase: .compute("writing the checkpoint of a requested stop"))
        try saveCheckpoint(to: checkpoints)
      }
    }
    let saved = checkpoints == nil ? nil : lastCheckpoint
    var fields: [String: MetricValue] = ["step": .int(step), "signal": .string(asker)]
    if let saved { fields["checkpoint"] = .string(saved) }
    try metrics?.append("stopped", fields)
    let elapsed = Date().timeIntervalSince(state.trainStart)
    if let saved {
      console.line(
        "stopped by \(asker) after step \(step) (\(String(format: "%.1f", elapsed)) s); checkpoint \(saved). "
          + "Continue with: \(Self.resumeCommand(worldSize: communicator.size))")
    } else {
      console.line(
        "stopped by \(asker) after step \(step) (\(String(format: "%.1f", elapsed)) s); nothing saved "
          + "(no --checkpoint-dir)")
    }
    try communicator.barrier()
    return TrainingSummary(
      steps: step, trainLoss: state.lastTrainLoss, testLoss: state.lastEvaluation.loss,
      testAccuracy: state.lastEvaluation.accuracy, elapsedSeconds: elapsed, checkpoint: saved, stoppedBy: asker)
  }

  /// This process's command line with `--resume` (and without `--start-fresh` or test faults), behind
  /// `mpirun -np K` when there are K ranks: the command that continues a stopped run.
  /// `ddp-train launch` passes its own resuming command in `DDP_TRAIN_RESUME_COMMAND`; that one is printed then.
  static func resumeCommand(worldSize: Int) -> String {
    if let given = ProcessInfo.processInfo.environment["DDP_TRAIN_RESUME_COMMAND"], !given.isEmpty { return given }
    var words = FaultInjection.removed(from: CommandLine.arguments).filter {
      !["--start-fresh", "--resume", "--no-resume"].contains($0)
    }
    words.append("--resume")
    let prefix = worldSize > 1 ? ["mpirun", "-np", String(worldSize)] : []
    return (prefix + words).map(shellQuoted).joined(separator: " ")
  }

  /// Test loss and accuracy of the current parameters; the test set is split across ranks in contiguous
  /// chunks and the sums all-reduced, so every rank gets the same numbers. Collective.
  public func evaluate(_ dataset: Dataset) throws -> (loss: Double, accuracy: Double) {
    try Self.evaluate(model: model, dataset: dataset, communicator: communicator, watchdog: watchdog, step: step)
  }

  static func evaluate(
    model: Sequential, dataset: Dataset, communicator: Communicator, watchdog: Watchdog?, step: Int
  ) throws -> (loss: Double, accuracy: Double) {
    let lower = dataset.count * communicator.rank / communicator.size
    let upper = dataset.count * (communicator.rank + 1) / communicator.size
    let assembler = BatchAssembler(featureCount: dataset.featureCount, maxBatch: evaluationBatch)
    var sums = [0.0, 0.0]
    var start = lower
    while start < upper {
      watchdog?.beat(step: step, phase: .compute("evaluating the test set"))
      let end = min(start + evaluationBatch, upper)
      assembler.assemble(from: dataset, range: start..<end)
      let result = model.evaluate(input: assembler.inputs, labels: assembler.labels, batch: end - start)
      sums[0] += result.lossSum
      sums[1] += Double(result.correct)
      start = end
    }
    watchdog?.beat(step: step, phase: .collective("evaluation all-reduce"))
    try communicator.allReduceSum(&sums)
    return (sums[0] / Double(dataset.count), sums[1] / Double(dataset.count))
  }

  /// Test loss and accuracy of `model` (for `eval`), split across the ranks of `communicator`.
  public static func evaluate(model: Sequential, dataset: Dataset, communicator: Communicator) throws -> (
    loss: Double, accuracy: Double
  ) {
    try evaluate(model: model, dataset: dataset, communicator: communicator, watchdog: nil, step: 0)
  }

  /// Forward + backward of this rank's B·M samples of step `stepInEpoch`; gradients scaled by 1/G as they
  /// accumulate. Returns the loss sum and correct count over these samples. `reportsRanges`: the last
  /// micro-batch reports its finished gradient ranges to the reducer.
  func computeLocalGradients(
    sampler: DistributedSampler, stepInEpoch: Int, permutation: UnsafeBufferPointer<Int32>,
    indices: UnsafeMutablePointer<Int32>, nextIndices: UnsafeMutablePointer<Int32>, batch: BatchAssembler,
    reportsRanges: Bool
  ) -> BatchResult {
    var local = BatchResult(lossSum: 0, correct: 0)
    var clock = Clock()
    for microBatch in 0..<plan.accumulate {
      sampler.fillIndices(step: stepInEpoch, microBatch: microBatch, permutation: permutation, into: indices)
      batch.assemble(from: data.train, indices: UnsafeBufferPointer(start: indices, count: plan.batchSize))
      // The rows of this sampler's next micro-batch in the epoch start on their way into the caches now and
      // arrive while this one trains (the next epoch's permutation is not known yet: its first step is not).
      let next = microBatch + 1 < plan.accumulate ? (stepInEpoch, microBatch + 1) : (stepInEpoch + 1, 0)
      if next.0 < plan.stepsPerEpoch {
        sampler.fillIndices(step: next.0, microBatch: next.1, permutation: permutation, into: nextIndices)
        batch.prefetch(from: data.train, indices: UnsafeBufferPointer(start: nextIndices, count: plan.batchSize))
      }
      times.data += clock.lap()
      let result = accumulateGradients(
        batch, reportsRanges: reportsRanges && microBatch == plan.accumulate - 1)
      times.compute += clock.lap()
      local.lossSum += result.lossSum
      local.correct += result.correct
    }
    return local
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

  /// Compares a hash of every rank's parameters (one 8-byte all-gather). Rank 0 reports a mismatch; the
  /// other ranks, which see the same hashes, end silently with it.
  func verifyRanksAgree() throws {
    guard communicator.size > 1 else { return }
    var hash = FNV1a64()
    model.parameters.pointer.withMemoryRebound(to: UInt32.self, capacity: model.parameterCount) {
      hash.combine(words: UnsafeBufferPointer(start: $0, count: model.parameterCount))
    }
    let mine = withUnsafeBytes(of: hash.value.littleEndian) { Array($0) }
    watchdog?.beat(step: step, phase: .collective("parameter consistency check"))
    let all = try communicator.allGather(mine)
    let hashes = stride(from: 0, to: all.count, by: 8).map { Array(all[$0..<($0 + 8)]) }
    let differing = hashes.indices.filter { hashes[$0] != hashes[0] }
    guard differing.isEmpty else {
      if communicator.isCoordinator { throw ConsistencyError(step: step, differingRanks: differing) }
      throw PeerFailure(rank: 0, exitCode: 1)
    }
  }

  static func validateMetricsPath(_ path: String) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
      if isDirectory.boolValue {
        throw ConfigurationError(
          option: "--metrics", expected: "a file path for JSON Lines", found: "the directory \(path)")
      }
      if !FileManager.default.isWritableFile(atPath: path) {
        throw ConfigurationError(option: "--metrics", expected: "a writable file", found: "\(path) is not writable")
      }
      return
    }
    // Walk up from the absolute path to the first existing ancestor: it must be a writable directory.
    var parent = (URL(fileURLWithPath: path).standardizedFileURL.path as NSString).deletingLastPathComponent
    while !FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory) {
      let up = (parent as NSString).deletingLastPathComponent
      if up.isEmpty || up == parent { break }
      parent = up
    }
    if !isDirectory.boolValue || !FileManager.default.isWritableFile(atPath: parent) {
      throw ConfigurationError(
        option: "--metrics", expected: "a path inside a writable directory",
        found: "\(path) (\(parent) is not a writable directory)")
    }
  }
}
