import Foundation
import TestSupport
import Testing

/// The bitwise-resume check the end-to-end suites share: the same training run twice under `mpirun`, once
/// uninterrupted and once with rank 1 exiting as step `failAt` begins and then `--resume`d, which must restart at the
/// checkpoint of `resumesAt`. The callers compare what their mechanism keeps (weights, moments, buffers).
enum InterruptedRun {
  /// `arguments(directory)` are the run's train options with `--checkpoint-dir directory`. Returns the two
  /// checkpoint directories (`scratch/full`, `scratch/interrupted`) and the uninterrupted run's result.
  static func run(
    ranks: Int, in scratch: URL, failAt: Int, resumesAt: Int, _ arguments: (URL) -> [String],
    sourceLocation: SourceLocation = #_sourceLocation
  ) throws -> (full: URL, interrupted: URL, reference: DDPTrainProcess.Result) {
    let full = scratch.appendingPathComponent("full")
    let interrupted = scratch.appendingPathComponent("interrupted")
    let reference = try DDPTrainProcess.mpirun(ranks: ranks, arguments(full))
    #expect(reference.status == 0, "\(reference.output)", sourceLocation: sourceLocation)
    let crashed = try DDPTrainProcess.mpirun(
      ranks: ranks, arguments(interrupted) + ["--inject-fault", "exit@1:\(failAt)"])
    #expect(crashed.status != 0, sourceLocation: sourceLocation)
    let resumed = try DDPTrainProcess.mpirun(ranks: ranks, arguments(interrupted) + ["--resume"])
    #expect(resumed.status == 0, "\(resumed.output)", sourceLocation: sourceLocation)
    #expect(resumed.stdout.contains("at step \(resumesAt)"), "\(resumed.stdout)", sourceLocation: sourceLocation)
    return (full, interrupted, reference)
  }
}
