import Tensors
import Testing

@testable import Datasets

@Suite("Distributed sampler")
struct DistributedSamplerTests {
  @Test("a permutation holds every index exactly once")
  func isPermutation() {
    for count in [0, 1, 2, 17, 1000] {
      let permutation = DistributedSampler.permutation(count: count, seed: 42, epoch: 3)
      #expect(permutation.count == count)
      #expect(permutation.sorted() == (0..<Int32(count)).map { $0 })
    }
  }

  @Test("the permutation is a function of (seed, epoch)")
  func permutationDeterminism() {
    let a = DistributedSampler.permutation(count: 500, seed: 7, epoch: 0)
    #expect(a == DistributedSampler.permutation(count: 500, seed: 7, epoch: 0))
    #expect(a != DistributedSampler.permutation(count: 500, seed: 7, epoch: 1))
    #expect(a != DistributedSampler.permutation(count: 500, seed: 8, epoch: 0))
    #expect(a != (0..<500).map { Int32($0) })
  }

  @Test("the permutation is the documented Fisher–Yates over the documented stream")
  func permutationReference() {
    // Written out from the doc comment: swap position i with a uniform position in 0...i, i from the end down.
    var rng = Xoshiro256(seed: 11, stream: RandomStream.epochPermutationBase + 2)
    var expected = (0..<Int32(50)).map { $0 }
    for i in stride(from: 49, to: 0, by: -1) { expected.swapAt(i, rng.nextIndex(below: i + 1)) }
    #expect(DistributedSampler.permutation(count: 50, seed: 11, epoch: 2) == expected)
  }

  @Test("steps per epoch and the unused tail")
  func arithmetic() {
    let sampler = DistributedSampler(
      datasetCount: 60000, worldSize: 4, rank: 1, batchSize: 64, seed: 1)
    #expect(sampler.globalBatch == 256)
    #expect(sampler.stepsPerEpoch == 234)
    #expect(sampler.unusedPerEpoch == 96)
    let accumulating = DistributedSampler(
      datasetCount: 60000, worldSize: 2, rank: 0, batchSize: 32, accumulationSteps: 4, seed: 1)
    #expect(accumulating.globalBatch == 256)
    #expect(accumulating.stepsPerEpoch == 234 && accumulating.unusedPerEpoch == 96)
    let tiny = DistributedSampler(datasetCount: 100, worldSize: 2, rank: 0, batchSize: 64, seed: 1)
    #expect(tiny.stepsPerEpoch == 0 && tiny.unusedPerEpoch == 100)
  }

  @Test("within an epoch no index repeats across all steps, ranks and micro-batches")
  func noRepeats() {
    let (count, worldSize, batchSize, microBatches) = (1000, 3, 7, 2)
    let permutation = DistributedSampler.permutation(count: count, seed: 5, epoch: 0)
    var seen = Set<Int32>()
    var total = 0
    for rank in 0..<worldSize {
      let sampler = DistributedSampler(
        datasetCount: count, worldSize: worldSize, rank: rank, batchSize: batchSize,
        accumulationSteps: microBatches, seed: 5)
      for step in 0..<sampler.stepsPerEpoch {
        for microBatch in 0..<microBatches {
          let indices = sampler.indices(
            step: step, microBatch: microBatch, permutation: permutation)
          #expect(indices.count == batchSize)
          seen.formUnion(indices)
          total += indices.count
        }
      }
    }
    let sampler = DistributedSampler(
      datasetCount: count, worldSize: worldSize, rank: 0, batchSize: batchSize,
      accumulationSteps: microBatches,
      seed: 5)
    #expect(total == count - sampler.unusedPerEpoch)
    #expect(seen.count == total)
    // The used indices are exactly the permutation's prefix; the tail is the unused remainder.
    #expect(seen == Set(permutation.prefix(total)))
  }

  @Test("K ranks at step s interleave into the one-rank batch of size K·B")
  func ranksInterleave() {
    let (count, worldSize, batchSize) = (517, 4, 8)
    let permutation = DistributedSampler.permutation(count: count, seed: 9, epoch: 4)
    let single = DistributedSampler(
      datasetCount: count, worldSize: 1, rank: 0, batchSize: worldSize * batchSize, seed: 9)
    let ranks = (0..<worldSize).map {
      DistributedSampler(
        datasetCount: count, worldSize: worldSize, rank: $0, batchSize: batchSize, seed: 9)
    }
    #expect(single.stepsPerEpoch == ranks[0].stepsPerEpoch)
    for step in 0..<single.stepsPerEpoch {
      let whole = single.indices(step: step, permutation: permutation)
      let parts = ranks.map { $0.indices(step: step, permutation: permutation) }
      #expect(Set(parts.joined()) == Set(whole))
      // Position K·j + r of the big batch is rank r's j-th sample (docs/INTERFACE.md: s·K·B + r + K·j).
      var interleaved = [Int32]()
      for j in 0..<batchSize { for rank in 0..<worldSize { interleaved.append(parts[rank][j]) } }
      #expect(interleaved == whole)
      #expect(
        whole
          == Array(
            permutation[(step * worldSize * batchSize)..<((step + 1) * worldSize * batchSize)]))
    }
  }

  @Test("accumulation: K=1, B=16, M=4 covers the positions of K=4, B=16, M=1 at every step")
  func accumulationMatchesRanks() {
    let count = 1000
    let permutation = DistributedSampler.permutation(count: count, seed: 3, epoch: 1)
    let accumulating = DistributedSampler(
      datasetCount: count, worldSize: 1, rank: 0, batchSize: 16, accumulationSteps: 4, seed: 3)
    let ranks = (0..<4).map {
      DistributedSampler(datasetCount: count, worldSize: 4, rank: $0, batchSize: 16, seed: 3)
    }
    #expect(accumulating.stepsPerEpoch == ranks[0].stepsPerEpoch)
    for step in 0..<accumulating.stepsPerEpoch {
      let micro = (0..<4).flatMap {
        accumulating.indices(step: step, microBatch: $0, permutation: permutation)
      }
      let spread = ranks.flatMap { $0.indices(step: step, permutation: permutation) }
      #expect(micro.count == 64)
      #expect(Set(micro) == Set(spread))
      #expect(Set(micro) == Set(permutation[(step * 64)..<((step + 1) * 64)]))
    }
  }

  @Test("fillIndices writes the documented positions for M > 1 and K > 1")
  func documentedPositions() {
    let permutation = DistributedSampler.permutation(count: 300, seed: 1, epoch: 0)
    let sampler = DistributedSampler(
      datasetCount: 300, worldSize: 3, rank: 2, batchSize: 5, accumulationSteps: 2, seed: 1)
    var output = [Int32](repeating: -1, count: 5)
    output.withUnsafeMutableBufferPointer { output in
      permutation.withUnsafeBufferPointer {
        sampler.fillIndices(step: 4, microBatch: 1, permutation: $0, into: output.baseAddress!)
      }
    }
    // s·G + r + K·(m·B + j) = 4·30 + 2 + 3·(5 + j)
    let expected: [Int32] = (0..<5).map { (j: Int) -> Int32 in permutation[120 + 2 + 3 * (5 + j)] }
    #expect(output == expected)
  }
}
