import Communication
import Datasets
import Foundation
import Testing

@testable import Training

/// A small synthetic problem and model, so debug builds train in well under a second.
func smallConfiguration(batch: Int, steps: Int) -> TrainingConfiguration {
  var configuration = TrainingConfiguration()
  configuration.dataset = .synthetic
  configuration.synthetic = SyntheticSpec(trainCount: 1024, testCount: 256, featureCount: 784, classCount: 10, seed: 3)
  configuration.model = "mlp:32,16"
  configuration.batchSize = batch
  configuration.maxSteps = steps
  configuration.learningRate = 0.05
  configuration.baseBatch = 32
  configuration.warmupEpochs = 0.25
  configuration.seed = 11
  return configuration
}

func loadSmallData(_ configuration: TrainingConfiguration) throws -> DatasetPair {
  try DatasetLoader.load(.synthetic, directory: nil, synthetic: configuration.synthetic)
}

/// Runs a trainer on each rank of a thread group and returns every rank's final parameters.
/// `hosts` pretends the threads run on several hosts (see `ThreadGroup`); `reduction` receives rank 0's reducer name.
func trainInThreads(
  ranks: Int, hosts: [Int]? = nil, _ configuration: TrainingConfiguration, data: DatasetPair,
  reduction: ((String) -> Void)? = nil
) throws -> [[Float]] {
  let results = ResultSlots(count: ranks + 1)
  try ThreadGroup(size: ranks, hosts: hosts).run { communicator in
    let trainer = try Trainer(
      configuration: configuration, communicator: communicator, data: data, console: Console(enabled: false))
    _ = try trainer.run()
    results.set(communicator.rank, trainer.model.parameters.array)
    if communicator.rank == 0 { results.setName(trainer.reductionName) }
  }
  if let reduction { reduction(results.name) }
  return Array(results.values.prefix(ranks))
}

final class ResultSlots: @unchecked Sendable {
  private let lock = NSLock()
  private var slots: [[Float]]
  init(count: Int) { slots = Array(repeating: [], count: count) }
  private var text = ""
  func set(_ index: Int, _ value: [Float]) { lock.withLock { slots[index] = value } }
  func setName(_ name: String) { lock.withLock { text = name } }
  var name: String { lock.withLock { text } }
  var values: [[Float]] { lock.withLock { slots } }
}

func maxRelativeDifference(_ a: [Float], _ b: [Float]) -> Double {
  var difference = 0.0
  var scale = 0.0
  for index in a.indices {
    difference = max(difference, abs(Double(a[index]) - Double(b[index])))
    scale = max(scale, abs(Double(b[index])))
  }
  return difference / scale
}

@Suite struct TrainerTests {
  @Test("K thread-ranks × B equal one rank × K·B; all ranks identical")
  func threadRanksEqualOneRankWithGlobalBatch() throws {
    let reference = smallConfiguration(batch: 32, steps: 40)
    let data = try loadSmallData(reference)
    let one = try trainInThreads(ranks: 1, reference, data: data)[0]
    var split = reference
    split.batchSize = 8
    let four = try trainInThreads(ranks: 4, split, data: data)
    for rank in 1..<4 { #expect(four[rank].map(\.bitPattern) == four[0].map(\.bitPattern)) }
    #expect(maxRelativeDifference(four[0], one) < 1e-5)
    // And both differ from a run that saw other data (another seed): the comparison can fail.
    var other = reference
    other.seed = 12
    let different = try trainInThreads(ranks: 1, other, data: data)[0]
    #expect(maxRelativeDifference(different, one) > 1e-2)
  }

  @Test("gradient accumulation: K=1, B=8, M=4 equals K=4, B=8")
  func accumulationEqualsMoreWorkers() throws {
    var accumulated = smallConfiguration(batch: 8, steps: 30)
    accumulated.accumulate = 4
    let data = try loadSmallData(accumulated)
    let one = try trainInThreads(ranks: 1, accumulated, data: data)[0]
    var workers = accumulated
    workers.accumulate = 1
    let four = try trainInThreads(ranks: 4, workers, data: data)[0]
    #expect(maxRelativeDifference(one, four) < 1e-5)
  }

  @Test("the loss falls: training learns the synthetic problem")
  func trainingLearns() throws {
    var configuration = smallConfiguration(batch: 32, steps: 150)
    configuration.lrScaling = .none
    let data = try loadSmallData(configuration)
    let trainer = try Trainer(
      configuration: configuration, communicator: SingleProcessCommunicator(), data: data,
      console: Console(enabled: false))
    let before = try trainer.evaluate(data.test)
    let summary = try trainer.run()
    #expect(summary.testAccuracy > before.accuracy + 0.3, "before \(before), after \(summary)")
    #expect(summary.testLoss < before.loss)
  }

  @Test("a diverging run stops with the step and the lr")
  func divergenceIsReported() throws {
    var configuration = smallConfiguration(batch: 32, steps: 50)
    configuration.learningRate = 1e4
    configuration.warmupEpochs = 0
    let data = try loadSmallData(configuration)
    let trainer = try Trainer(
      configuration: configuration, communicator: SingleProcessCommunicator(), data: data,
      console: Console(enabled: false))
    do {
      _ = try trainer.run()
      Issue.record("expected divergence")
    } catch TrainingError.diverged(let step, let learningRate, _, _) {
      #expect(step < 50)
      #expect(learningRate > 1000)
    }
  }

  @Test("resuming from a mid-epoch checkpoint ends bitwise where the uninterrupted run ends")
  func resumeIsBitwiseIdentical() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ddp-resume-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    // 64 steps per epoch: the checkpoint at step 37 is mid-epoch 0, the one at 74 mid-epoch 1.
    var full = smallConfiguration(batch: 16, steps: 100)
    full.checkpointDirectory = directory.path
    full.checkpointEvery = 37
    let data = try loadSmallData(full)
    let uninterrupted = try trainInThreads(ranks: 1, full, data: data)[0]

    // As if the run had been killed after writing step 37: only that checkpoint is left.
    for step in ["00000074", "00000100"] {
      try FileManager.default.removeItem(at: directory.appendingPathComponent("step-\(step)"))
    }
    var again = full
    again.resume = true
    let resumed = try trainInThreads(ranks: 1, again, data: data)[0]
    #expect(resumed.map(\.bitPattern) == uninterrupted.map(\.bitPattern))
  }
}

@Suite struct CollectiveTests {
  struct Boom: Error {}

  @Test("a failure on one rank is rethrown there and becomes PeerFailure everywhere else")
  func failureIsAgreed() throws {
    exitCodeForError = { _ in 2 }
    let outcomes = ResultSlots(count: 3)
    try ThreadGroup(size: 3).run { communicator in
      do {
        _ = try collectively(communicator) { () throws -> Int in
          if communicator.rank == 1 { throw Boom() }
          return 5
        }
        outcomes.set(communicator.rank, [0])
      } catch is Boom {
        outcomes.set(communicator.rank, [1])
      } catch let failure as PeerFailure {
        outcomes.set(communicator.rank, [2, Float(failure.rank), Float(failure.exitCode)])
      }
    }
    #expect(outcomes.values == [[2, 1, 2], [1], [2, 1, 2]])
  }

  @Test("no failure: every rank gets its own value")
  func successPassesThrough() throws {
    let outcomes = ResultSlots(count: 2)
    try ThreadGroup(size: 2).run { communicator in
      let value = try collectively(communicator) { Float(communicator.rank * 10) }
      outcomes.set(communicator.rank, [value])
    }
    #expect(outcomes.values == [[0], [10]])
  }
}
