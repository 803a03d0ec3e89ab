import Foundation

extension Trainer {
  /// Every rank was told in this step's reduction that some rank was asked to stop (`StopRequest`): all stop
  /// after the same step. The parameters are checked, rank 0 checkpoints this step (unless it just did), the
  /// metrics get a `stopped` event and rank 0 prints how to continue. Collective.
  func stopOnRequest(checkpointed: Bool, state: LoopState) throws -> TrainingSummary {
    let asker = StopRequest.signal.map(StopRequest.name) ?? "a signal to another rank"
    if !checkpointed {
      try verifyRanksAgree()
      if let checkpoints = checkpointing.directory {
        watchdog?.beat(step: step, phase: .compute("writing the checkpoint of a requested stop"))
        try saveCheckpoint(to: checkpoints)
      }
    }
    let saved = checkpointing.directory == nil ? nil : checkpointing.last
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

  /// This process's command line with `--resume` unless it has `--resume-if-any` (and without `--start-fresh` or test
  /// faults), behind
  /// `mpirun -np K` when there are K ranks: the command that continues a stopped run.
  /// `ddp-train launch` passes its own resuming command in `DDP_TRAIN_RESUME_COMMAND`; that one is printed then.
  static func resumeCommand(worldSize: Int) -> String {
    if let given = ProcessInfo.processInfo.environment["DDP_TRAIN_RESUME_COMMAND"], !given.isEmpty { return given }
    var words = FaultInjection.removed(from: CommandLine.arguments).filter {
      !["--start-fresh", "--resume", "--no-resume"].contains($0)
    }
    // `--resume-if-any` resumes by itself once a checkpoint exists: the same command continues.
    if !words.contains("--resume-if-any") { words.append("--resume") }
    let prefix = worldSize > 1 ? ["mpirun", "-np", String(worldSize)] : []
    return (prefix + words).map(shellQuoted).joined(separator: " ")
  }
}
