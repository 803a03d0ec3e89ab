import Datasets
import Foundation
import Testing

@testable import Training

@Suite struct RunPlanTests {
  func data(count: Int) -> DatasetPair {
    var configuration = TrainingConfiguration()
    configuration.synthetic = SyntheticSpec(
      trainCount: count, testCount: 10, featureCount: 784, classCount: 10, seed: 1)
    return try! DatasetLoader.load(.synthetic, directory: nil, synthetic: configuration.synthetic)
  }

  @Test("batch arithmetic: floor(N/(K·B)) steps, the remainder unused, lr scaled to K·B")
  func arithmetic() throws {
    var configuration = TrainingConfiguration()
    configuration.batchSize = 7
    configuration.epochs = 3
    let plan = try RunPlan(configuration: configuration, worldSize: 3, rank: 1, data: data(count: 1000))
    #expect(plan.globalBatch == 21)
    #expect(plan.stepsPerEpoch == 47)  // 1000 / 21
    #expect(plan.unusedPerEpoch == 13)  // 1000 − 47·21
    #expect(plan.totalSteps == 141)
    #expect(abs(plan.learningRate.peakLR - 0.05 * 21.0 / 64.0) < 1e-12)
    #expect(plan.summaryLines.contains { $0.contains("3 workers × 7 = global batch 21") })
  }

  @Test("a batch larger than the shard is an error naming --batch-size and the shard size")
  func batchLargerThanShard() throws {
    var configuration = TrainingConfiguration()
    configuration.batchSize = 334
    #expect(throws: ConfigurationError.self) {
      try RunPlan(configuration: configuration, worldSize: 3, rank: 0, data: data(count: 1000))
    }
    do {
      _ = try RunPlan(configuration: configuration, worldSize: 3, rank: 0, data: data(count: 1000))
    } catch {
      #expect(error.option == "--batch-size")
      #expect(error.description.contains("333"))
    }
    configuration.batchSize = 333
    #expect(
      try RunPlan(configuration: configuration, worldSize: 3, rank: 0, data: data(count: 1000)).stepsPerEpoch == 1)
  }

  @Test("validation names the option for each bad setting")
  func validation() {
    func option(_ change: (inout TrainingConfiguration) -> Void) -> String? {
      var configuration = TrainingConfiguration()
      change(&configuration)
      do { try configuration.validate() } catch { return error.option }
      return nil
    }
    #expect(option { _ in } == nil)
    #expect(option { $0.batchSize = 0 } == "--batch-size")
    #expect(option { $0.epochs = -1 } == "--epochs")
    #expect(option { $0.maxSteps = 0 } == "--max-steps")
    #expect(option { $0.learningRate = 0 } == "--lr")
    #expect(option { $0.learningRate = -1 } == "--lr")
    #expect(option { $0.learningRate = .nan } == "--lr")
    #expect(option { $0.warmupEpochs = -0.5 } == "--warmup-epochs")
    #expect(option { $0.momentum = 1 } == "--momentum")
    #expect(option { $0.resume = true } == "--resume")
    #expect(option { $0.dataset = .mnist } == "--data-dir")
  }
}

@Suite struct MetricsLogTests {
  @Test("one JSON object per line, appended, non-finite numbers as strings")
  func jsonLines() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString)/m.jsonl")
      .path
    defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
    do {
      let log = try MetricsLog(path: path)
      try log.append("run", ["world_size": 4, "peak_lr": 0.2, "name": "a \"quoted\"\nline"])
      try log.append("step", ["step": 0, "loss": .double(.nan), "lr": .double(.infinity)])
    }
    do {
      let log = try MetricsLog(path: path)
      try log.append("epoch", ["epoch": 1])
    }
    let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 3)
    let objects = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    #expect(objects.map { $0["event"] as? String } == ["run", "step", "epoch"])
    #expect(objects[0]["world_size"] as? Int == 4)
    #expect(objects[0]["peak_lr"] as? Double == 0.2)
    #expect(objects[0]["name"] as? String == "a \"quoted\"\nline")
    #expect(objects[1]["loss"] as? String == "NaN")
    #expect(objects[1]["lr"] as? String == "Infinity")
  }
}
