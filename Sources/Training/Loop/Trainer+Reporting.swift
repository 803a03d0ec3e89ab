import Foundation
import Tensors

extension Trainer {
  /// Rank 0's opening lines: what is trained on what, and the batch and lr arithmetic the run implies.
  func printHeader(resumedFrom checkpoint: LoadedCheckpoint?) {
    let source = data.kind == .synthetic ? data.source : "\(data.kind.rawValue) (\(data.source))"
    console.line("ddp-train: \(plan.model) (\(model.parameterCount) parameters) on \(source)")
    for line in plan.summaryLines { console.line("  " + line) }
    var optimizer = "sgd:   momentum \(configuration.momentum), weight decay \(configuration.weightDecay)"
    if configuration.optimizer == .lars {
      optimizer =
        "lars:  trust coefficient \(configuration.trustCoefficient), momentum \(configuration.momentum), "
        + "weight decay \(configuration.weightDecay) (biases: plain SGD)"
    }
    if configuration.nesterov { optimizer += ", nesterov" }
    console.line("  " + optimizer + ", seed \(configuration.seed)")
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
        "momentum": .double(configuration.momentum), "weight_decay": .double(configuration.weightDecay),
        "seed": .int(Int(truncatingIfNeeded: configuration.seed)), "model": .string(plan.model.name),
        "parameters": .int(model.parameterCount),
      ])
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
