import Datasets
import Foundation
import HostCounters

extension Trainer {
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
    /// The line that shows the epoch's progress on a terminal (rank 0).
    let progress: ProgressLine
    private var permutation: [Int32] = []
    private var permutationEpoch = -1

    init(startStep: Int, progress: ProgressLine) {
      self.startStep = startStep
      self.progress = progress
    }

    /// The shared sample order of `epoch` (docs/INTERFACE.md, "Data order"), computed once per epoch.
    mutating func permutation(epoch: Int, of count: Int, seed: UInt64) -> [Int32] {
      if epoch != permutationEpoch {
        permutation = DistributedSampler.permutation(count: count, seed: seed, epoch: epoch)
        permutationEpoch = epoch
      }
      return permutation
    }
  }

  /// Per-step scratch, allocated once: the sample indices and the assembled batch.
  struct BatchScratch {
    let indices: UnsafeMutablePointer<Int32>
    /// The next micro-batch's indices, whose rows are prefetched while this one trains.
    let nextIndices: UnsafeMutablePointer<Int32>
    let batch: BatchAssembler
  }
}
