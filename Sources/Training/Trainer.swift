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
}

/// Data-parallel SGD over a `Communicator`: every rank runs this same loop on its shard of each global batch.
///
/// One optimizer step t (0-based) of epoch e = t / stepsPerEpoch:
///   1. each rank gathers its B·M samples of the epoch's shared permutation (CONTRACT.md, "Data order");
///   2. forward + backward, gradients scaled by 1/(K·B·M) while accumulating, so the all-reduced SUM is the
///      global MEAN gradient (the loss is normalised by the whole global batch);
///   3. ONE all-reduce over the flat gradient buffer, whose tail also carries the loss sum and the correct count;
///   4. the same SGD update on every rank, with lr(t) a pure function of t. Parameters stay identical on every
///      rank because they start identical (rank 0's are broadcast) and receive identical updates.
public final class Trainer {
  // What the run is: settings, batch arithmetic, data, and the world it runs in.
  public let configuration: TrainingConfiguration
  public let plan: RunPlan
  let data: DatasetPair
  let communicator: Communicator
  /// One sampler per worker this process computes (several with --simulate-workers).
  let workerSamplers: [DistributedSampler]

  // The model, its update rule, and how gradients meet across ranks.
  let model: MLP
  let optimizer: any Optimizer
  let reducer: GradientReducer
  /// The running rank-order sum of the simulated workers' gradients.
  lazy var simulatedSum = FloatBuffer(count: model.gradients.count)

  /// Where the scalars riding along the gradient all-reduce live (past the parameters).
  enum GradientTail {
    /// This rank's loss sum / G: sums to the global mean loss.
    static let lossSum = 0
    /// This rank's correct predictions: sums to the global count.
    static let correct = 1
    /// |g_small|²/K on noise-scale steps (g_small: this rank's mean gradient): sums to the mean over ranks.
    static let smallGradientSquaredNorm = 2
    static let count = 3
  }
  public static let evaluationBatch = 500
  /// Measure the noise-scale norms every this many steps (two extra passes over the gradient).
  static let noiseScaleInterval = 10

  // Where the run goes: rank 0's console, metrics and checkpoints.
  let console: Console
  var metrics: MetricsLog?
  let checkpoints: CheckpointDirectory?
  var lastCheckpoint: String?
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
  public var reductionName: String { reducer.name }
  /// Set by `ddp-train bench` before `run`: when each step's gradient collective began and ended on this rank.
  public var collectiveTimestamps: CollectiveTimestamps?
  /// The gradient noise scale, when there are two batch sizes to compare (K·B·M > B·M).
  var noiseScale: GradientNoiseScale?

  /// Builds the model and optimizer; throws ConfigurationError for settings the data makes impossible.
  public init(configuration: TrainingConfiguration, communicator: Communicator, data: DatasetPair, console: Console)
    throws
  {
    self.configuration = configuration
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
    // The shared-memory reducer, when it applies, places the model's gradients in its window (collective).
    let sharedReducer =
      configuration.usesSharedMemoryReduction && configuration.simulateWorkers == nil
      ? try SharedMemoryReducer.make(
        communicator: communicator, count: plan.model.parameterCount + GradientTail.count)
      : nil
    model = MLP(
      spec: plan.model, maxBatch: max(plan.batchSize, Self.evaluationBatch), gradientTailSlots: GradientTail.count,
      gradientStorage: sharedReducer?.ownSlot)
    switch configuration.effectiveOptimizer {
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
          trustCoefficient: configuration.effectiveTrustCoefficient, nesterov: configuration.nesterov))
    }
    checkpoints = configuration.checkpointDirectory.map { path in
      var directory = CheckpointDirectory(path: path)
      directory.fileWrittenHook = configuration.injectFault?.checkpointHook
      return directory
    }
    reducer =
      sharedReducer ?? Self.makeReducer(configuration: configuration, communicator: communicator, model: model)
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
    if configuration.resume { return try loadNewestCheckpoint(from: checkpoints) }
    if !configuration.startFresh, let newest = try checkpoints.list().first {
      throw CheckpointError(
        path: checkpoints.path,
        problem: "already holds checkpoints of a run (newest \((newest.path as NSString).lastPathComponent))",
        hint:
          "Pass --resume to continue it, --start-fresh to train anew (replacing same-step folders), or another --checkpoint-dir."
      )
    }
    return nil
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
    self.watchdog = watchdog
    watchdog.start()
    ExitGuard.arm(communicator)
    defer {
      watchdog.stop()
      ExitGuard.disarm()
    }
    var stepDurations: [Double] = []

    let trainStart = Date()
    var epochStart = Date()
    var lastEvaluation = (loss: Double.nan, accuracy: Double.nan)
    var lastTrainLoss = Double.nan
    let samplesPerStep = plan.globalBatch
    var epochSamples = 0
    var permutation: [Int32] = []
    var permutationEpoch = -1
    let indices = UnsafeMutablePointer<Int32>.allocate(capacity: plan.batchSize)
    defer { indices.deallocate() }
    let batch = BatchAssembler(featureCount: data.train.featureCount, maxBatch: plan.batchSize)
    let progress = ProgressLine(console: console, stepsPerEpoch: plan.stepsPerEpoch)
    let parameterCount = model.parameterCount

    while step < plan.totalSteps {
      let stepStart = Date()
      watchdog.beat(step: step, phase: .compute("computing its gradient"))
      ExitGuard.update(step: step)
      let epoch = step / plan.stepsPerEpoch
      let stepInEpoch = step % plan.stepsPerEpoch
      if epoch != permutationEpoch {
        permutation = DistributedSampler.permutation(count: plan.trainCount, seed: configuration.seed, epoch: epoch)
        permutationEpoch = epoch
      }

      // 1-2. This rank's micro-batches: forward + backward into the flat gradient buffer.
      let measureNoise = noiseScale != nil && step % Self.noiseScaleInterval == 0
      var clock = Clock()
      // Where the step's summed gradients (and tail) end up: the model's buffer, or the reducer's.
      var gradients = model.gradients
      if workerSamplers.count == 1 {
        model.zeroGradients()
        try configuration.injectFault?.trigger(
          rank: communicator.rank, step: step, parameters: model.parameters.pointer, gradients: model.gradients.pointer)
        let local = permutation.withUnsafeBufferPointer { order in
          computeLocalGradients(
            sampler: workerSamplers[0], stepInEpoch: stepInEpoch, permutation: order, indices: indices, batch: batch)
        }
        writeGradientTail(local, measureNoise: measureNoise)

        // 3. One all-reduce: mean gradient, global mean loss, global correct count (and noise-scale norms).
        watchdog.beat(step: step, phase: .collective("gradient all-reduce"))
        clock = Clock()
        let entry = collectiveTimestamps == nil ? 0 : CollectiveTimestamps.now()
        gradients = try reducer.finish(model.gradients)
        times.allReduce += clock.lap()
        collectiveTimestamps?.record(step: step, entry: entry, exit: CollectiveTimestamps.now())
      } else {
        // 1-3 for a simulated world: each virtual worker alone, summed in rank order (= DeterministicReducer).
        for (worker, sampler) in workerSamplers.enumerated() {
          model.zeroGradients()
          let local = permutation.withUnsafeBufferPointer { order in
            computeLocalGradients(
              sampler: sampler, stepInEpoch: stepInEpoch, permutation: order, indices: indices, batch: batch)
          }
          writeGradientTail(local, measureNoise: measureNoise)
          if worker == 0 {
            simulatedSum.pointer.update(from: model.gradients.pointer, count: model.gradients.count)
          } else {
            RankOrderSum.add(model.gradients.pointer, into: simulatedSum.pointer, count: model.gradients.count)
          }
        }
        gradients = simulatedSum
        clock = Clock()
      }
      watchdog.beat(step: step, phase: .compute("updating its parameters"))
      let loss = Double(gradients[parameterCount + GradientTail.lossSum])
      let learningRate = plan.learningRate.learningRate(atStep: step)
      var noiseFields: [String: MetricValue] = [:]
      if measureNoise && loss.isFinite { noiseFields = measureNoiseScale(gradients) }

      // 4. The update, identical on every rank; it also tells whether every gradient was finite.
      let finite =
        loss.isFinite
        && optimizer.step(
          parameters: model.parameters.pointer, gradients: gradients.pointer, learningRate: Float(learningRate))
      times.other += clock.lap()
      guard finite else {
        // Every rank sees the same all-reduced values: rank 0 reports, the others end silently with it. The
        // parameters are garbage from here on; nothing is saved.
        guard communicator.isCoordinator else { throw PeerFailure(rank: 0, exitCode: 3) }
        try? metrics?.append("diverged", ["step": .int(step), "lr": .double(learningRate), "loss": .double(loss)])
        throw TrainingError.diverged(step: step, learningRate: learningRate, loss: loss, checkpoint: lastCheckpoint)
      }

      epochLossSum += loss
      epochCorrect += Double(gradients[parameterCount + GradientTail.correct])
      epochSteps += 1
      epochSamples += samplesPerStep
      if step % configuration.logEvery == 0 {
        try metrics?.append(
          "step",
          ["step": .int(step), "epoch": .int(epoch + 1), "lr": .double(learningRate), "loss": .double(loss)]
            .merging(noiseFields) { first, _ in first })
      }
      step += 1
      if stepDurations.count < 24 {
        // The typical step time (median of steps 4-23) sets the automatic watchdog timeout.
        stepDurations.append(Date().timeIntervalSince(stepStart))
        if stepDurations.count == 24 { watchdog.setTypicalStep(seconds: stepDurations.dropFirst(4).sorted()[10]) }
      }
      progress.update(epoch: epoch, stepInEpoch: stepInEpoch + 1, loss: epochLossSum / Double(epochSteps))

      let epochEnds = step % plan.stepsPerEpoch == 0 || step == plan.totalSteps
      if epochEnds {
        let trainSeconds = Date().timeIntervalSince(epochStart)
        progress.clear()
        lastTrainLoss = epochLossSum / Double(max(epochSteps, 1))
        let trainAccuracy = epochCorrect / Double(max(epochSteps, 1) * plan.globalBatch)
        lastEvaluation = try evaluate(data.test)
        let samplesPerSecond = Double(epochSamples) / max(trainSeconds, 1e-9)
        let partial = step % plan.stepsPerEpoch != 0
        try logEpoch(
          epoch: epoch + 1, learningRate: learningRate, trainLoss: lastTrainLoss, trainAccuracy: trainAccuracy,
          evaluation: lastEvaluation, samplesPerSecond: samplesPerSecond, epochSeconds: trainSeconds,
          elapsed: Date().timeIntervalSince(trainStart), partial: partial)
        times = StepTimes()
        epochLossSum = 0
        epochCorrect = 0
        epochSteps = 0
        epochSamples = 0
        epochStart = Date()
      }
      let periodic = configuration.checkpointEvery > 0 && step % configuration.checkpointEvery == 0
      let checkpointNow = checkpoints != nil && (periodic || step == plan.totalSteps)
      let checkNow = configuration.checkConsistency > 0 && step % configuration.checkConsistency == 0
      if checkNow || checkpointNow || step == plan.totalSteps { try verifyRanksAgree() }
      if checkpointNow, let checkpoints {
        watchdog.beat(step: step, phase: .compute("writing a checkpoint"))
        try saveCheckpoint(to: checkpoints)
      }
    }
    if plan.totalSteps == step && epochSteps == 0 && lastEvaluation.loss.isNaN {
      // Resumed at the very end: nothing trained in this run, still report the model's quality.
      lastEvaluation = try evaluate(data.test)
    }
    let elapsed = Date().timeIntervalSince(trainStart)
    console.line(
      String(
        format: "done: %d steps in %.1f s; test accuracy %.4f, test loss %.4f", step, elapsed,
        lastEvaluation.accuracy, lastEvaluation.loss))
    try communicator.barrier()
    return TrainingSummary(
      steps: step, trainLoss: lastTrainLoss, testLoss: lastEvaluation.loss, testAccuracy: lastEvaluation.accuracy,
      elapsedSeconds: elapsed, checkpoint: lastCheckpoint)
  }

  /// Test loss and accuracy of the current parameters; the test set is split across ranks in contiguous
  /// chunks and the sums all-reduced, so every rank gets the same numbers. Collective.
  public func evaluate(_ dataset: Dataset) throws -> (loss: Double, accuracy: Double) {
    try Self.evaluate(model: model, dataset: dataset, communicator: communicator, watchdog: watchdog, step: step)
  }

  static func evaluate(
    model: MLP, dataset: Dataset, communicator: Communicator, watchdog: Watchdog?, step: Int
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
  public static func evaluate(model: MLP, dataset: Dataset, communicator: Communicator) throws -> (
    loss: Double, accuracy: Double
  ) {
    try evaluate(model: model, dataset: dataset, communicator: communicator, watchdog: nil, step: 0)
  }

  /// Forward + backward of this rank's B·M samples of step `stepInEpoch`; gradients scaled by 1/G as they
  /// accumulate. Returns the loss sum and correct count over these samples.
  func computeLocalGradients(
    sampler: DistributedSampler, stepInEpoch: Int, permutation: UnsafeBufferPointer<Int32>,
    indices: UnsafeMutablePointer<Int32>, batch: BatchAssembler
  ) -> MLP.BatchResult {
    var local = MLP.BatchResult(lossSum: 0, correct: 0)
    var clock = Clock()
    for microBatch in 0..<plan.accumulate {
      sampler.fillIndices(step: stepInEpoch, microBatch: microBatch, permutation: permutation, into: indices)
      batch.assemble(from: data.train, indices: UnsafeBufferPointer(start: indices, count: plan.batchSize))
      times.data += clock.lap()
      let result = accumulateGradients(batch, lastMicroBatch: microBatch == plan.accumulate - 1)
      times.compute += clock.lap()
      local.lossSum += result.lossSum
      local.correct += result.correct
    }
    return local
  }

  /// Fills the scalars that ride along the gradient all-reduce (see `GradientTail`).
  func writeGradientTail(_ local: MLP.BatchResult, measureNoise: Bool) {
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
