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

/// Layouts are compared one step at a time from a common state. Their steps agree to rounding, but whole runs part
/// by rounding in jumps: a ReLU input within rounding distance of 0 falls one way in one run and the other way in
/// the other, adding or dropping a whole term of the gradient, and training carries it along. Whether and when that
/// happens depends on the CPU and on OpenBLAS's kernel family, so a whole-run comparison against a fixed tolerance
/// holds on one machine and fails on another.
enum CommonState {
  /// The tolerance of one step (max|a − b| / max|b|), and how far that step must at least move the parameters
  /// from the common state for the comparison to mean anything (the steps taken here move them 2.5e-2 to 5.6e-2).
  static let tolerance = 1e-5
  static let minimumMovement = 1e-4

  /// `configuration` on one rank for `step` steps, leaving the checkpoint of `step` alone in a new directory;
  /// returns the directory and the parameters there. The schedule must be constant (the resumed runs end at
  /// `step` + 1, and `maxSteps` is also cosine's horizon, whose last step has an lr of nearly 0).
  static func make(at step: Int, _ configuration: TrainingConfiguration, data: DatasetPair) throws -> (
    directory: URL, parameters: [Float]
  ) {
    precondition(configuration.schedule == .constant)
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ddp-common-\(UUID().uuidString)")
    var reference = configuration
    reference.maxSteps = step
    reference.checkpointDirectory = directory.path
    reference.checkpointEvery = 0
    return (directory, try trainInThreads(ranks: 1, reference, data: data)[0])
  }

  /// One step from the common state in `directory` (a fresh copy of it, resumed to `step` + 1) on `ranks`
  /// thread-ranks; returns every rank's parameters after it.
  static func oneStep(
    from directory: URL, at step: Int, ranks: Int, hosts: [Int]? = nil, _ configuration: TrainingConfiguration,
    data: DatasetPair
  ) throws -> [[Float]] {
    let copy = FileManager.default.temporaryDirectory.appendingPathComponent("ddp-step-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: copy) }
    try FileManager.default.copyItem(at: directory, to: copy)
    var resumed = configuration
    resumed.maxSteps = step + 1
    resumed.checkpointDirectory = copy.path
    resumed.checkpointEvery = 0
    resumed.resume = true
    return try trainInThreads(ranks: ranks, hosts: hosts, resumed, data: data)
  }

  /// Checks that `a` and `b`, each one step from `start`, agree to `tolerance` and moved by more than
  /// `minimumMovement`.
  static func expectSameStep(
    _ a: [Float], _ b: [Float], from start: [Float], _ label: String,
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    let distance = maxRelativeDifference(a, b)
    let moved = maxRelativeDifference(b, start)
    // The margins, in the log: how far apart the two steps are and how far the step moved.
    print("CommonState: \(label): " + String(format: "%.2e apart, the step moved %.2e", distance, moved))
    #expect(distance < tolerance, "\(label): relative distance \(distance)", sourceLocation: sourceLocation)
    #expect(
      moved > minimumMovement, "\(label): the step moved the parameters only \(moved)", sourceLocation: sourceLocation)
  }
}

@Suite struct TrainerTests {
  @Test(
    "one step of 4 thread-ranks × B=8 from a common state equals one step of one rank × 32 (at steps 5, 20, 35; 1e-5); all ranks identical"
  )
  func threadRanksEqualOneRankWithGlobalBatch() throws {
    // One step at a time from a common state (`CommonState`): 32 steps an epoch, so step 5 is in warmup and 35 in
    // the middle of the second epoch.
    var reference = smallConfiguration(batch: 32, steps: 40)
    reference.schedule = .constant
    let data = try loadSmallData(reference)
    var split = reference
    split.batchSize = 8
    for step in [5, 20, 35] {
      let common = try CommonState.make(at: step, reference, data: data)
      defer { try? FileManager.default.removeItem(at: common.directory) }
      let one = try CommonState.oneStep(from: common.directory, at: step, ranks: 1, reference, data: data)[0]
      let four = try CommonState.oneStep(from: common.directory, at: step, ranks: 4, split, data: data)
      for rank in 1..<4 { #expect(four[rank].map(\.bitPattern) == four[0].map(\.bitPattern)) }
      CommonState.expectSameStep(four[0], one, from: common.parameters, "step \(step)")
    }
  }

  @Test(
    "gradient accumulation: one step of K=1, B=8, M=4 from a common state equals one step of K=4, B=8 (at steps 5, 20; 1e-5)"
  )
  func accumulationEqualsMoreWorkers() throws {
    // One step at a time from a common state (`CommonState`).
    var accumulated = smallConfiguration(batch: 8, steps: 30)
    accumulated.schedule = .constant
    accumulated.accumulate = 4
    let data = try loadSmallData(accumulated)
    var workers = accumulated
    workers.accumulate = 1
    for step in [5, 20] {
      let common = try CommonState.make(at: step, accumulated, data: data)
      defer { try? FileManager.default.removeItem(at: common.directory) }
      let one = try CommonState.oneStep(from: common.directory, at: step, ranks: 1, accumulated, data: data)[0]
      let four = try CommonState.oneStep(from: common.directory, at: step, ranks: 4, workers, data: data)[0]
      CommonState.expectSameStep(one, four, from: common.parameters, "step \(step)")
    }
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
