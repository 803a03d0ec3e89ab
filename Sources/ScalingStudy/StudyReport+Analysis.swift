import Foundation
import Inspection

extension StudyReport {
  /// Every dataset the study trains on has 10 classes: chance is accuracy 0.1 and loss ln 10.
  public static let classCount = 10

  /// Builds the report from the plan, how each run ended and the metrics each run wrote. Pure: no I/O.
  public init(
    plan: StudyPlan, outcomes: [String: RunOutcome], metrics: [String: RunMetrics],
    commands: [String: [String]],
    cores: Int, cpu: String? = nil, command: [String], created: String
  ) {
    let settings = plan.settings
    self.created = created
    self.command = command
    self.settings = settings
    let oversubscribed = settings.workers.filter { $0 > cores }
    machine = Machine(cores: cores, oversubscribedWorkers: oversubscribed, cpu: cpu)

    let statuses = Dictionary(
      uniqueKeysWithValues: plan.runs.map { run in
        (run.id, Self.classify(outcome: outcomes[run.id], metrics: metrics[run.id] ?? RunMetrics()))
      })
    runs = plan.runs.map { run in
      let outcome = outcomes[run.id]
      return RunRecord(
        id: run.id, part: run.part, policy: run.policy, workers: run.workers,
        batchSize: run.batchSize,
        accumulate: run.accumulate, globalBatch: run.globalBatch,
        command: outcome?.command ?? commands[run.id] ?? [],
        exitStatus: outcome?.exitStatus, seconds: outcome?.seconds,
        timedOut: outcome?.timedOut ?? false,
        status: statuses[run.id]?.status ?? .notRun, metricsFile: "metrics/\(run.id).jsonl",
        logFile: "logs/\(run.id).log",
        errorTail: outcome?.errorTail, loadAverage: outcome?.loadAverage)
    }

    // Speed.
    var speed: [SpeedRow] = []
    for workers in settings.workers {
      let ids = plan.speedRuns[workers] ?? []
      let measured = ids.compactMap { id -> SpeedNumbers? in
        guard statuses[id]?.status == .ok, let runMetrics = metrics[id] else { return nil }
        return Self.speedNumbers(runMetrics, globalBatch: workers * settings.speedBatch)
      }
      var row = SpeedRow(
        workers: workers, batchSize: settings.speedBatch,
        globalBatch: workers * settings.speedBatch,
        oversubscribed: workers > cores, runIds: ids,
        status: measured.isEmpty ? (statuses[ids.first ?? ""]?.status ?? .notRun) : .ok,
        measuredEpochs: measured.first?.epochs ?? [])
      if !measured.isEmpty {
        row.samplesPerSecond = Self.median(measured.map(\.samplesPerSecond))
        row.stepsPerSecond = Self.median(measured.map(\.stepsPerSecond))
        row.stepMilliseconds = Self.median(measured.map(\.stepMilliseconds))
        row.dataMilliseconds = Self.median(measured.map(\.dataMilliseconds))
        row.computeMilliseconds = Self.median(measured.map(\.computeMilliseconds))
        row.communicationMilliseconds = Self.median(measured.map(\.communicationMilliseconds))
        row.otherMilliseconds = Self.median(measured.map(\.otherMilliseconds))
        row.finalTestAccuracy = Self.median(measured.map(\.finalTestAccuracy))
      }
      row.loadAverage = Self.median(ids.compactMap { outcomes[$0]?.loadAverage })
      speed.append(row)
    }
    if let reference = speed.first(where: { $0.workers == 1 })?.samplesPerSecond {
      for index in speed.indices {
        guard let throughput = speed[index].samplesPerSecond else { continue }
        speed[index].speedup = throughput / reference
        speed[index].efficiency = throughput / reference / Double(speed[index].workers)
      }
    }
    self.speed = speed

    // Accuracy.
    var cellsByPolicy: [StudyPolicy: [AccuracyCell]] = [:]
    for policy in settings.policies {
      cellsByPolicy[policy] = settings.globalBatches.sorted().compactMap { globalBatch in
        guard let id = plan.cells[policy]?[globalBatch], let run = plan.run(id: id) else {
          return nil
        }
        let runMetrics = metrics[id] ?? RunMetrics()
        let (status, divergence) = statuses[id] ?? (.notRun, nil)
        let epochs = runMetrics.epochs.compactMap(Self.epochPoint)
        let last = epochs.last?.testAccuracy
        let final: Double? =
          switch status {
          case .ok: last
          case .diverged: divergence?.kind == "chance" ? last : nil
          case .failed, .notRun: nil
          }
        return AccuracyCell(
          globalBatch: globalBatch, runId: id, workers: run.workers, batchSize: run.batchSize,
          accumulate: run.accumulate, datasetSize: runMetrics.run?.integer("dataset_size"),
          stepsPerEpoch: runMetrics.run?.integer("steps_per_epoch"),
          totalSteps: runMetrics.run?.integer("total_steps"),
          peakLearningRate: runMetrics.run?.number("peak_lr"),
          warmupSteps: runMetrics.run?.integer("warmup_steps"),
          status: status, divergence: divergence, epochs: epochs, finalTestAccuracy: final,
          withinTolerance: false)
      }
    }
    let baselineBatch = settings.baselineBatch
    let baselinePolicy =
      settings.policies.first { policy in
        policy != .lars
          && cellsByPolicy[policy]?.first { $0.globalBatch == baselineBatch }?.status == .ok
      } ?? settings.policies.first
    var baseline: Baseline?
    if let baselinePolicy,
      let cell = cellsByPolicy[baselinePolicy]?.first(where: { $0.globalBatch == baselineBatch }),
      cell.status == .ok, let accuracy = cell.finalTestAccuracy
    {
      baseline = Baseline(
        runId: cell.runId, policy: baselinePolicy, globalBatch: baselineBatch,
        testAccuracy: accuracy)
    }
    var policies: [PolicyResult] = []
    for policy in settings.policies {
      var cells = cellsByPolicy[policy] ?? []
      for index in cells.indices {
        if let baseline, cells[index].status == .ok, let accuracy = cells[index].finalTestAccuracy {
          cells[index].withinTolerance =
            accuracy >= baseline.testAccuracy - settings.tolerance - 1e-12
        }
      }
      let largest = cells.filter(\.withinTolerance).map(\.globalBatch).max()
      let firstBelow = cells.first {
        $0.globalBatch > baselineBatch && !$0.withinTolerance && $0.status != .notRun
      }?
      .globalBatch
      policies.append(
        PolicyResult(
          policy: policy, label: policy.label, cells: cells,
          largestWithinTolerance: baseline == nil ? nil : largest,
          firstBelowTolerance: baseline == nil ? nil : firstBelow))
    }
    accuracy = AccuracySection(
      baseline: baseline, tolerance: settings.tolerance, policies: policies)

    // Gradient noise scale, from the K > 1 speed runs.
    var measurements: [NoiseScaleRun] = []
    for workers in settings.workers.sorted() where workers > 1 {
      guard let id = plan.speedRuns[workers]?.first, let runMetrics = metrics[id],
        statuses[id]?.status == .ok
      else {
        continue
      }
      let perEpoch = runMetrics.epochs.map { $0.number("noise_scale") }
      let finite = perEpoch.compactMap { $0 }.filter(\.isFinite)
      measurements.append(
        NoiseScaleRun(
          runId: id, workers: workers, smallBatch: settings.speedBatch,
          bigBatch: workers * settings.speedBatch,
          perEpoch: perEpoch, median: Self.median(finite), last: finite.last,
          stepMeasurements: runMetrics.steps.filter { $0.fields["grad_sq_small"] != nil }.count))
    }
    let headline = measurements.last { $0.median != nil }
    let linear = policies.first { $0.policy == .linearWarmup }
    noiseScale = NoiseScaleSection(
      measurements: measurements, estimate: headline?.median,
      estimateSource: headline.map {
        "median over the epochs of \($0.runId) (b_small = \($0.smallBatch), b_big = \($0.bigBatch))"
      },
      largestHoldingBatch: linear?.largestWithinTolerance,
      breakdownBatch: linear?.firstBelowTolerance)
  }

  /// ok; diverged (exit 3 = NaN/Inf, or finished at chance: train loss ≥ 0.95·ln C and test accuracy ≤ 1.5/C);
  /// failed (any other status).
  static func classify(outcome: RunOutcome?, metrics: RunMetrics) -> (
    status: RunStatus, divergence: Divergence?
  ) {
    guard let outcome else { return (.notRun, nil) }
    switch outcome.exitStatus {
    case 0:
      guard let last = metrics.epochs.last else { return (.failed, nil) }
      let chanceLoss = log(Double(classCount))
      let trainLoss = last.number("train_loss") ?? .nan
      let accuracy = last.number("test_accuracy") ?? .nan
      // Both: a run that learns slowly (few steps, small lr) keeps a high loss but beats chance on the test set.
      if (!trainLoss.isFinite || trainLoss >= 0.95 * chanceLoss)
        && !(accuracy > 1.5 / Double(classCount))
      {
        return (
          .diverged,
          Divergence(
            kind: "chance", step: last.integer("step"), lr: last.number("lr"), loss: trainLoss)
        )
      }
      return (.ok, nil)
    case 3:
      let event = metrics.diverged
      return (
        .diverged,
        Divergence(
          kind: "non-finite", step: event?.integer("step"), lr: event?.number("lr"),
          loss: event?.number("loss"))
      )
    default:
      return (.failed, nil)
    }
  }

  static func epochPoint(_ event: RunMetrics.Event) -> EpochPoint? {
    guard let epoch = event.integer("epoch"), let step = event.integer("step") else { return nil }
    return EpochPoint(
      epoch: epoch, step: step, lr: event.number("lr") ?? .nan,
      trainLoss: event.number("train_loss") ?? .nan,
      testLoss: event.number("test_loss") ?? .nan,
      testAccuracy: event.number("test_accuracy") ?? .nan,
      noiseScale: event.number("noise_scale"))
  }

  struct SpeedNumbers {
    var epochs: [Int]
    var samplesPerSecond: Double
    var stepsPerSecond: Double
    var stepMilliseconds: Double
    var dataMilliseconds: Double
    var computeMilliseconds: Double
    var communicationMilliseconds: Double
    var otherMilliseconds: Double
    var finalTestAccuracy: Double
  }

  /// Throughput and rank 0's time split over the epochs after the first (all of them when there is one).
  static func speedNumbers(_ metrics: RunMetrics, globalBatch: Int) -> SpeedNumbers? {
    var previousStep = metrics.run?.integer("start_step") ?? 0
    var rows:
      [(
        epoch: Int, steps: Int, seconds: Double, data: Double, compute: Double,
        communication: Double
      )] = []
    for event in metrics.epochs {
      guard let epoch = event.integer("epoch"), let step = event.integer("step"),
        let seconds = event.number("epoch_s")
      else { return nil }
      rows.append(
        (
          epoch, step - previousStep, seconds, event.number("time_data_s") ?? 0,
          event.number("time_compute_s") ?? 0,
          event.number("time_allreduce_s") ?? 0
        ))
      previousStep = step
    }
    let measured = rows.count > 1 ? Array(rows.dropFirst()) : rows
    let steps = Double(measured.reduce(0) { $0 + $1.steps })
    let seconds = measured.reduce(0) { $0 + $1.seconds }
    guard steps > 0, seconds > 0 else { return nil }
    let perStep = 1000 / steps
    let data = measured.reduce(0) { $0 + $1.data } * perStep
    let compute = measured.reduce(0) { $0 + $1.compute } * perStep
    let communication = measured.reduce(0) { $0 + $1.communication } * perStep
    let step = seconds * perStep
    return SpeedNumbers(
      epochs: measured.map(\.epoch), samplesPerSecond: steps * Double(globalBatch) / seconds,
      stepsPerSecond: steps / seconds, stepMilliseconds: step, dataMilliseconds: data,
      computeMilliseconds: compute,
      communicationMilliseconds: communication,
      otherMilliseconds: max(0, step - data - compute - communication),
      finalTestAccuracy: metrics.epochs.last?.number("test_accuracy") ?? .nan)
  }

  static func median(_ values: [Double]) -> Double? {
    let sorted = values.filter { !$0.isNaN }.sorted()
    guard !sorted.isEmpty else { return nil }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
  }
}
