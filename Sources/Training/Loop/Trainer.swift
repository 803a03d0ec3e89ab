import Checkpoints
import Communication
import Datasets
import Foundation
import GradientExchange
import HostCounters
import Layers
import Optimizers
import Tensors

/// Data-parallel SGD over a `Communicator`: every rank runs this same loop on its shard of each global batch.
///
/// One optimizer step t (0-based) of epoch e = t / stepsPerEpoch (`run`):
///   1. gather: each rank assembles its B·M samples of the epoch's shared permutation (docs/INTERFACE.md,
///      "Data order");
///   2. local gradients: forward + backward, gradients scaled by 1/(K·B·M) while accumulating, so the summed
///      gradient is the global MEAN gradient (the loss is normalised by the whole global batch);
///   3. reduce: the rank's flat gradient buffer, whose tail also carries the loss sum and the correct count, is
///      summed over the ranks by the run's `Reduction` (shared memory, MPI, or the simulated workers);
///   4. update: the same SGD step on every rank, with lr(t) a pure function of t. Parameters stay identical on
///      every rank because they start identical (rank 0's are broadcast) and receive identical updates; so do
///      the batch norms' running statistics (Note [Running statistics]);
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
  let updateRule: UpdateRule
  package let reduction: Reduction
  /// `--batch-norm sync`'s sums over the ranks (nil otherwise; Note [Running statistics]).
  let statisticsSynchronizer: RankStatisticsSum?

  // Where the run goes: rank 0's console, metrics and checkpoints.
  let console: Console
  var metrics: MetricsLog?
  var checkpointing: Checkpointing
  /// FNV-1a of the training split, computed once (state.json and the start-up agreement use it).
  lazy var trainFingerprint: UInt64 = data.train.fingerprint

  // Progress: the state a checkpoint carries besides the tensors.
  /// The next optimizer step to run; equals the number of steps completed.
  var step = 0
  /// The current epoch's running sums (restored on resume) and time split.
  var thisEpoch = EpochTally()

  // Instruments.
  var watchdog: Watchdog?
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
    // Collective. The shared-memory and hierarchical reducers place the gradient buffer themselves.
    reduction = try Reduction.make(
      options: configuration.reductionOptions, communicator: communicator,
      count: plan.model.parameterCount + Self.tailCount(plan), parameterCount: plan.model.parameterCount)
    model = Sequential(
      spec: plan.model, maxBatch: max(plan.batchSize, plan.model.evaluationBatch), maxTrainingBatch: plan.batchSize,
      gradientStorage: reduction.gradients)
    statisticsSynchronizer = try Self.makeStatisticsSynchronizer(
      configuration: configuration, communicator: communicator, spec: plan.model)
    model.synchronizeBatchStatistics(with: statisticsSynchronizer)
    model.labelSmoothing = Float(configuration.labelSmoothing)
    updateRule = UpdateRule(configuration: configuration, model: model)
    checkpointing = Checkpointing(
      directory: configuration.checkpointDirectory.map { path in
        var directory = CheckpointDirectory(path: path)
        directory.fileWrittenHook = faults?.checkpointHook
        return directory
      })
    let localBatch = plan.batchSize * plan.accumulate
    if plan.globalBatch > localBatch {
      noiseScale = GradientNoiseScale(smallBatch: localBatch, bigBatch: plan.globalBatch)
    }
  }

  /// The run's reducer (`reduction` chose it).
  var reducer: any GradientReducer { reduction.reducer }
  /// How this run sums gradients across ranks, in words (the run header, `ddp-train bench`).
  public var reductionName: String { reduction.description }
  /// The length of the buffer a step reduces: the parameters' gradients and the scalar tail.
  public var reducedCount: Int { model.parameterCount + Self.tailCount(plan) }
  /// Where this epoch's step time went so far (`EpochTally.times`), for its report.
  var times: StepTimes { thisEpoch.times }

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

    let watchdog = Watchdog(communicator: communicator, timeout: configuration.stepTimeout)
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
      batch: BatchAssembler(
        featureCount: data.train.featureCount, maxBatch: plan.batchSize, sampleShape: data.train.sampleShape,
        preprocessing: configuration.preprocessing))
    defer {
      scratch.indices.deallocate()
      scratch.nextIndices.deallocate()
    }
    var state = LoopState(
      startStep: step,
      progress: ProgressLine(
        console: console, stepsPerEpoch: plan.stepsPerEpoch, totalSteps: plan.totalSteps, startStep: step))

    while step < plan.totalSteps {
      let stepStart = Date()
      watchdog.beat(step: step, phase: .compute("computing its gradient"))
      ExitGuard.update(step: step)
      let measureNoise = noiseScale != nil && step % Self.noiseScaleInterval == 0
      // 1-2. Every worker this process computes: gather its samples, forward + backward into the gradient buffer.
      let permutation = state.permutation(
        epoch: step / plan.stepsPerEpoch, of: plan.trainCount, seed: configuration.seed)
      try permutation.withUnsafeBufferPointer { order in
        try computeWorkerGradients(permutation: order, scratch: scratch, measureNoise: measureNoise)
      }
      // 3. The sum over the ranks: mean gradient, global mean loss, global correct count (and noise-scale norms),
      // and whether any rank was asked to stop.
      let reduced = try reduceGradients(measureNoise: measureNoise)
      // 4. The update, identical on every rank.
      let (loss, learningRate, noiseFields) = try update(with: reduced, measureNoise: measureNoise)
      // 5. Bookkeeping; a stop some rank asked for ends the run after it.
      let stopped = try finishStep(
        reduced.sums, loss: loss, learningRate: learningRate, noiseFields: noiseFields, started: stepStart,
        state: &state)
      if let stopped { return stopped }
    }
    if plan.totalSteps == step && thisEpoch.steps == 0 && state.lastEvaluation.loss.isNaN {
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
      testAccuracy: state.lastEvaluation.accuracy, elapsedSeconds: elapsed, checkpoint: checkpointing.last)
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
      let local = try computeLocalGradients(
        sampler: sampler, stepInEpoch: stepInEpoch, permutation: permutation, indices: scratch.indices,
        nextIndices: scratch.nextIndices, batch: scratch.batch, reportsRanges: !measureNoise)
      writeGradientTail(local, measureNoise: measureNoise)
      reducer.workerFinished(worker, gradients: model.gradients)
    }
  }

  /// Step 3: the run's sum of every rank's gradient buffer, timed and watched. Where the reducer and the optimizer
  /// can (`AddendReducer`, `TwoAddendOptimizer`), the parameters' last addition is left to the update; not on a
  /// noise-scale step, which needs the summed gradient's norm first.
  func reduceGradients(measureNoise: Bool) throws -> ReducedGradients {
    watchdog?.beat(step: step, phase: .collective("gradient all-reduce"))
    var clock = Clock()
    let reduced = try reduction.reduce(
      model.gradients, parameterCount: model.parameterCount, step: step,
      leavingAddends: !measureNoise && updateRule.takesAddends)
    thisEpoch.times.allReduce += clock.lap()
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
    let finite =
      loss.isFinite
      && updateRule.apply(reduced, to: model.parameters.pointer, learningRate: Float(learningRate))
    updateRunningStatistics(gradients)
    thisEpoch.times.other += clock.lap()
    guard finite else {
      // Every rank sees the same reduced values: rank 0 reports, the others end silently with it. The
      // parameters are garbage from here on; nothing is saved.
      guard communicator.isCoordinator else { throw PeerFailure(rank: 0, exitCode: 3) }
      try? metrics?.append("diverged", ["step": .int(step), "lr": .double(learningRate), "loss": .double(loss)])
      throw TrainingError.diverged(step: step, learningRate: learningRate, loss: loss, checkpoint: checkpointing.last)
    }
    return (loss, learningRate, noiseFields)
  }

  /// Step 5, after the update of the step that started at `started`, with `sums` the step's reduced buffer: the
  /// step's record, the step count, the watchdog's typical step, the progress line, the end of an epoch, the
  /// consistency check and the checkpoint. Returns the run's summary when a rank asked to stop (`StopRequest`) and
  /// the run ends here, nil to go on.
  func finishStep(
    _ sums: FloatBuffer, loss: Double, learningRate: Double, noiseFields: [String: MetricValue], started: Date,
    state: inout LoopState
  ) throws -> TrainingSummary? {
    let epoch = step / plan.stepsPerEpoch
    let stopRequested = sums[model.parameterCount + GradientTail.stopRequests] > 0
    try recordStep(
      loss: loss, correct: Double(sums[model.parameterCount + GradientTail.correct]), learningRate: learningRate,
      noiseFields: noiseFields, state: &state)
    step += 1
    if state.firstStepDurations.count < 24 {
      state.firstStepDurations.append(Date().timeIntervalSince(started))
      if state.firstStepDurations.count == 24 {
        watchdog?.setTypicalStep(seconds: state.firstStepDurations.dropFirst(4).sorted()[10])
      }
    }
    state.progress.update(
      epoch: epoch, stepInEpoch: step - epoch * plan.stepsPerEpoch, step: step,
      loss: thisEpoch.lossSum / Double(thisEpoch.steps))
    if step % plan.stepsPerEpoch == 0 || step == plan.totalSteps {
      state.progress.clear()
      try finishEpoch(epoch: epoch, learningRate: learningRate, state: &state)
    }
    let checkpointed = try checkAndCheckpoint()
    guard stopRequested && step < plan.totalSteps else { return nil }
    state.progress.clear()
    return try stopOnRequest(checkpointed: checkpointed, state: state)
  }

  /// Step 5, per step: the epoch's running sums and the metrics `step` event (every --log-every steps).
  func recordStep(
    loss: Double, correct: Double, learningRate: Double, noiseFields: [String: MetricValue], state: inout LoopState
  ) throws {
    thisEpoch.lossSum += loss
    thisEpoch.correct += correct
    thisEpoch.steps += 1
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
    state.lastTrainLoss = thisEpoch.lossSum / Double(max(thisEpoch.steps, 1))
    let trainAccuracy = thisEpoch.correct / Double(max(thisEpoch.steps, 1) * plan.globalBatch)
    state.lastEvaluation = try evaluate(data.test)
    let samplesPerSecond = Double(state.epochSamples) / max(trainSeconds, 1e-9)
    try logEpoch(
      epoch: epoch + 1, learningRate: learningRate, trainLoss: state.lastTrainLoss, trainAccuracy: trainAccuracy,
      evaluation: state.lastEvaluation, samplesPerSecond: samplesPerSecond, epochSeconds: trainSeconds, steal: steal,
      elapsed: Date().timeIntervalSince(state.trainStart), partial: step % plan.stepsPerEpoch != 0,
      runSecondsLeft: remainingSeconds(
        done: step - state.startStep, total: plan.totalSteps - state.startStep,
        seconds: Date().timeIntervalSince(state.trainStart)))
    thisEpoch = EpochTally()
    state.epochSamples = 0
    state.epochStart = Date()
    state.epochCPUTimes = communicator.isCoordinator ? CPUTimes.current() : nil
  }

  /// Step 5, after the step count moved on: the parameter consistency check and the checkpoint, when due.
  /// Returns whether a checkpoint of this step was written (the same answer on every rank).
  @discardableResult
  func checkAndCheckpoint() throws -> Bool {
    let periodic = configuration.checkpointEvery > 0 && step % configuration.checkpointEvery == 0
    let checkpointNow = checkpointing.directory != nil && (periodic || step == plan.totalSteps)
    let checkNow = configuration.checkConsistency > 0 && step % configuration.checkConsistency == 0
    if checkNow || checkpointNow || step == plan.totalSteps { try verifyRanksAgree() }
    if checkpointNow, let checkpoints = checkpointing.directory {
      watchdog?.beat(step: step, phase: .compute("writing a checkpoint"))
      try saveCheckpoint(to: checkpoints)
    }
    return checkpointNow
  }
}
