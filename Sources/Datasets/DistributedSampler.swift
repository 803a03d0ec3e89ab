import Tensors

/// Which dataset indices each rank uses at each step: docs/INTERFACE.md's "Data order", extended to gradient accumulation.
///
/// Every epoch has one permutation of `0..<datasetCount`, a pure function of (seed, epoch), so every rank computes
/// it alone and resuming needs only the epoch and the step. A step consumes `globalBatch = K·B·M` consecutive
/// permutation positions; rank r's micro-batch m takes `s·G + r + K·(m·B + j)` for j in 0..<B, so the K ranks
/// interleave (as PyTorch's DistributedSampler does) and M micro-batches of one rank cover the same positions as
/// M times as many ranks would. The last `unusedPerEpoch` positions of each permutation are dropped.
public struct DistributedSampler: Sendable, Equatable {
  public let datasetCount: Int
  public let worldSize: Int
  public let rank: Int
  /// B: samples per rank per micro-batch.
  public let batchSize: Int
  /// M: micro-batches per optimizer step.
  public let accumulationSteps: Int
  public let seed: UInt64

  public init(
    datasetCount: Int, worldSize: Int, rank: Int, batchSize: Int, accumulationSteps: Int = 1,
    seed: UInt64
  ) {
    precondition(
      datasetCount >= 0 && datasetCount <= Int(Int32.max), "datasetCount must be in 0...Int32.max")
    precondition(worldSize >= 1, "worldSize must be >= 1")
    precondition(rank >= 0 && rank < worldSize, "rank must be in 0..<worldSize")
    precondition(batchSize >= 1, "batchSize must be >= 1")
    precondition(accumulationSteps >= 1, "accumulationSteps must be >= 1")
    self.datasetCount = datasetCount
    self.worldSize = worldSize
    self.rank = rank
    self.batchSize = batchSize
    self.accumulationSteps = accumulationSteps
    self.seed = seed
  }

  /// G = K·B·M, the samples of one optimizer step over all ranks.
  public var globalBatch: Int { worldSize * batchSize * accumulationSteps }
  /// floor(N / G); 0 when the dataset is smaller than one global batch.
  public var stepsPerEpoch: Int { datasetCount / globalBatch }
  /// N − stepsPerEpoch·G: the permutation's tail that no step uses.
  public var unusedPerEpoch: Int { datasetCount - stepsPerEpoch * globalBatch }

  /// The permutation of `0..<count` for `epoch` (0-based), identical on every rank: Fisher–Yates (from the last
  /// position down, swapping with a uniform position at or below it) driven by
  /// `Xoshiro256(seed: seed, stream: RandomStream.epochPermutationBase + UInt64(epoch))`.
  public static func permutation(count: Int, seed: UInt64, epoch: Int) -> [Int32] {
    precondition(count >= 0 && count <= Int(Int32.max), "count must be in 0...Int32.max")
    precondition(epoch >= 0, "epoch must be >= 0")
    var rng = Xoshiro256(seed: seed, stream: RandomStream.epochPermutationBase + UInt64(epoch))
    var order = (0..<Int32(count)).map { $0 }
    order.withUnsafeMutableBufferPointer { order in
      var i = count - 1
      while i > 0 {
        let j = rng.nextIndex(below: i + 1)
        order.swapAt(i, j)
        i -= 1
      }
    }
    return order
  }

  /// The permutation position of this rank's first sample of micro-batch `microBatch` of step `step`; its j-th is
  /// `firstPosition + worldSize·j` (what `fillIndices` reads).
  public func firstPosition(step: Int, microBatch: Int) -> Int {
    step * globalBatch + rank + worldSize * microBatch * batchSize
  }

  /// Writes this rank's B dataset indices for micro-batch `microBatch` (0..<M) of step `step` (0..<stepsPerEpoch):
  /// `permutation[s·G + rank + K·(m·B + j)]` for j in 0..<B. For M = 1 this is docs/INTERFACE.md's
  /// "rank r takes positions s·K·B + r + K·j". No allocation.
  public func fillIndices(
    step: Int, microBatch: Int, permutation: UnsafeBufferPointer<Int32>,
    into output: UnsafeMutablePointer<Int32>
  ) {
    precondition(permutation.count == datasetCount, "permutation must have datasetCount entries")
    precondition(step >= 0 && step < stepsPerEpoch, "step must be in 0..<stepsPerEpoch")
    precondition(
      microBatch >= 0 && microBatch < accumulationSteps,
      "microBatch must be in 0..<accumulationSteps")
    let first = step * globalBatch + rank + worldSize * microBatch * batchSize
    for j in 0..<batchSize {
      output[j] = permutation[first + worldSize * j]
    }
  }

  /// `fillIndices` into a new array, for tests and tools.
  public func indices(step: Int, microBatch: Int = 0, permutation: [Int32]) -> [Int32] {
    [Int32](unsafeUninitializedCapacity: batchSize) { output, initialized in
      permutation.withUnsafeBufferPointer { permutation in
        fillIndices(
          step: step, microBatch: microBatch, permutation: permutation, into: output.baseAddress!)
      }
      initialized = batchSize
    }
  }
}
