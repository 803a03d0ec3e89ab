import Foundation
import Testing

@testable import Datasets
@testable import Training

/// Randomness follows the sample, not the rank: with `--random-crop`, `--random-flip` and `--normalize`, K workers
/// still take the step one process takes with K·B, and a resumed run still ends where the uninterrupted one ends.
@Suite struct AugmentationTrainerTests {
  static func configuration(batch: Int, steps: Int) -> TrainingConfiguration {
    var configuration = smallConfiguration(batch: batch, steps: steps)
    configuration.schedule = .constant
    configuration.randomCrop = 3
    configuration.randomFlip = true
    configuration.normalize = Normalization("0.2:0.3")
    return configuration
  }

  @Test(
    "augmented: one step of 4 thread-ranks × B=8 from a common state equals one step of one rank × 32 (at steps 5 and 40; 1e-5), and augmentation changes the step"
  )
  func augmentedRanksEqualOneRank() throws {
    let reference = Self.configuration(batch: 32, steps: 50)
    let data = try loadSmallData(reference)
    #expect(data.train.sampleShape == [1, 28, 28])
    var split = reference
    split.batchSize = 8
    var plain = reference
    (plain.randomCrop, plain.randomFlip) = (0, false)
    for step in [5, 40] {
      let common = try CommonState.make(at: step, reference, data: data)
      defer { try? FileManager.default.removeItem(at: common.directory) }
      let one = try CommonState.oneStep(from: common.directory, at: step, ranks: 1, reference, data: data)[0]
      let four = try CommonState.oneStep(from: common.directory, at: step, ranks: 4, split, data: data)
      CommonState.expectSameStep(four[0], one, from: common.parameters, "step \(step)")
      let unaugmented = try CommonState.oneStep(from: common.directory, at: step, ranks: 1, plain, data: data)[0]
      #expect(maxRelativeDifference(unaugmented, one) > 1e-4, "the crop and flip should change the step")
    }
  }

  @Test("augmented: resuming from a mid-epoch checkpoint ends bitwise where the uninterrupted run ends")
  func augmentedResumeIsBitwise() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ddp-aug-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    // 64 steps an epoch at B=16: the checkpoint at 40 is mid-epoch 0, and the run crosses into epoch 1.
    var full = Self.configuration(batch: 16, steps: 90)
    full.checkpointDirectory = directory.path
    full.checkpointEvery = 40
    let data = try loadSmallData(full)
    let uninterrupted = try trainInThreads(ranks: 2, full, data: data)[0]
    for step in ["00000080", "00000090"] {
      try FileManager.default.removeItem(at: directory.appendingPathComponent("step-\(step)"))
    }
    var again = full
    again.resume = true
    let resumed = try trainInThreads(ranks: 2, again, data: data)[0]
    #expect(resumed.map(\.bitPattern) == uninterrupted.map(\.bitPattern))
  }

  @Test("--random-crop on data without an image shape, or --normalize with the wrong channel count, is refused")
  func badPreprocessingIsRefused() throws {
    var configuration = Self.configuration(batch: 16, steps: 5)
    let data = try loadSmallData(configuration)
    configuration.normalize = Normalization("0.2,0.2:0.3,0.3")
    #expect(throws: ConfigurationError.self) {
      _ = try RunPlan(configuration: configuration, worldSize: 1, rank: 0, data: data)
    }
    func flattened(_ set: Dataset) -> Dataset {
      Dataset(
        count: set.count, featureCount: 784, classCount: set.classCount, samples: set.samples, labels: set.labels)
    }
    let flat = DatasetPair(kind: .synthetic, source: "flat", train: flattened(data.train), test: flattened(data.test))
    configuration.normalize = nil
    #expect(throws: ConfigurationError.self) {
      _ = try RunPlan(configuration: configuration, worldSize: 1, rank: 0, data: flat)
    }
  }
}
