import Foundation
import Optimizers
import Tensors

extension Trainer {
  /// Rank 0's opening lines: what is trained on what, and the batch and lr arithmetic the run implies.
  func printHeader(resumedFrom checkpoint: LoadedCheckpoint?) {
    let source = data.kind == .synthetic ? data.source : "\(data.kind.rawValue) (\(data.source))"
    console.line("ddp-train: \(plan.model) (\(model.parameterCount) parameters) on \(source)")
    for line in plan.summaryLines { console.line("  " + line) }
    console.line("  " + optimizerLine + ", seed \(configuration.seed)")
    let threads = configuration.blasThreads == 1 ? "1 thread" : "\(configuration.blasThreads) threads"
    console.line("  blas:  \(BLAS.kernelDescription), \(threads) per rank")
    if let note = BLAS.narrowKernelsNote { console.line("  note:  " + note) }
    if communicator.size > 1 { console.line("  gradients: " + reductionName) }
    if let checkpoint {
      console.line("  resume: from \(checkpoint.location.path) at step \(step)")
    }
    if let directory = configuration.checkpointDirectory {
      let every = configuration.checkpointEvery > 0 ? "every \(configuration.checkpointEvery) steps and " : ""
      console.line("  checkpoints: \(directory) (\(every)at the end)")
    }
    if let path = configuration.metricsPath { console.line("  metrics: \(path)") }
  }

  /// "sgd:   momentum 0.9, weight decay 0.0005" and the like: the update rule with its resolved settings.
  var optimizerLine: String {
    let c = configuration
    let decay =
      "weight decay \(c.resolvedWeightDecay)" + (c.biasDecay ? "" : " (not on biases and batch-norm parameters)")
    switch c.optimizer {
    case .sgd:
      return "sgd:   momentum \(c.resolvedMomentum), \(decay)" + (c.resolvedNesterov ? ", nesterov" : "")
    case .lars:
      return "lars:  trust coefficient \(c.trustCoefficient), momentum \(c.resolvedMomentum), \(decay) "
        + "(biases: plain SGD)" + (c.resolvedNesterov ? ", nesterov" : "")
    case .adamw:
      return "adamw: betas \(c.resolvedBetas), eps \(c.resolvedEps), decoupled \(decay)"
    case .lamb:
      return "lamb:  betas \(c.resolvedBetas), eps \(c.resolvedEps), \(decay), gradient norm clipped at "
        + "\(LAMB.maxGradientNorm), trust ratio where decayed"
    }
  }

  func logRunEvent() throws {
    guard let metrics else { return }
    let lr = plan.learningRate
    try metrics.append(
      "run",
      [
        "world_size": .int(plan.worldSize), "batch_size": .int(plan.batchSize), "accumulate": .int(plan.accumulate),
        "global_batch": .int(plan.globalBatch), "dataset": .string(data.kind.rawValue),
        "dataset_size": .int(plan.trainCount), "test_size": .int(plan.testCount),
        "steps_per_epoch": .int(plan.stepsPerEpoch), "unused_per_epoch": .int(plan.unusedPerEpoch),
        "total_steps": .int(plan.totalSteps), "start_step": .int(step), "epochs": .int(plan.epochCount),
        "base_lr": .double(lr.baseLearningRate), "base_batch": .int(lr.baseBatch),
        "lr_scaling": .string(lr.scaling.rawValue),
        "peak_lr": .double(lr.peakLR), "warmup_steps": .int(lr.warmupSteps), "schedule": .string(lr.decay.description),
        "optimizer": .string(configuration.optimizer.rawValue),
        "weight_decay": .double(configuration.resolvedWeightDecay), "bias_decay": .bool(configuration.biasDecay),
        "seed": .int(Int(truncatingIfNeeded: configuration.seed)), "model": .string(plan.model.name),
        "parameters": .int(model.parameterCount),
      ].merging(
        configuration.usesMomentum
          ? ["momentum": .double(configuration.resolvedMomentum)]
          : [
            "betas": .array([.double(configuration.resolvedBetas.first), .double(configuration.resolvedBetas.second)]),
            "eps": .double(configuration.resolvedEps),
          ]
      ) { a, _ in a })
  }

  func logEpoch(
    epoch: Int, learningRate: Double, trainLoss: Double, trainAccuracy: Double,
    evaluation: (loss: Double, accuracy: Double), samplesPerSecond: Double, epochSeconds: Double, steal: Double?,
    elapsed: Double, partial: Bool, runSecondsLeft: Double?
  ) throws {
    let of = partial ? " (partial)" : "/\(plan.epochCount)"
    console.line(
      String(format: "epoch %3d", epoch) + of
        + String(
          format: "  train loss %.4f  test loss %.4f  test acc %.4f  lr %.5f  %8.0f samples/s  %6.1f s elapsed",
          trainLoss, evaluation.loss, evaluation.accuracy, learningRate, samplesPerSecond, elapsed)
        // The hypervisor's share of the host's CPU time during the epoch's training: a slow epoch with steal was
        // slowed by other guests, not by the run.
        + (steal.map { String(format: "  steal %.1f%%", 100 * $0) } ?? "")
        + (step < plan.totalSteps ? runSecondsLeft.map { "  ETA \(durationText($0))" } ?? "" : ""))
    var fields: [String: MetricValue] = [
      "epoch": .int(epoch), "step": .int(step), "lr": .double(learningRate), "train_loss": .double(trainLoss),
      "train_accuracy": .double(trainAccuracy), "test_loss": .double(evaluation.loss),
      "test_accuracy": .double(evaluation.accuracy), "samples_per_sec": .double(samplesPerSecond),
      "epoch_s": .double(epochSeconds), "elapsed_s": .double(elapsed),
    ]
    if let steal { fields["host_steal"] = .double(steal) }
    if partial { fields["partial"] = .bool(true) }
    // This rank's (rank 0's) time split over the epoch's steps.
    fields["time_data_s"] = .double(times.data)
    fields["time_compute_s"] = .double(times.compute)
    fields["time_allreduce_s"] = .double(times.allReduce)
    fields["time_other_s"] = .double(times.other)
    if let scale = noiseScale?.simpleNoiseScale { fields["noise_scale"] = .double(scale) }
    try metrics?.append("epoch", fields)
  }
}
