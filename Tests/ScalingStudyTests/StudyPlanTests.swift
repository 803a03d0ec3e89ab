import Testing
import Training

@testable import ScalingStudy

@Suite struct StudyPlanTests {
  @Test func globalBatchesAreReachedThroughMicroBatchesAndAccumulation() {
    var settings = StudySettings()
    #expect(settings.decomposition(ofGlobalBatch: 64) == (1, 64, 1))
    #expect(settings.decomposition(ofGlobalBatch: 256) == (1, 256, 1))
    #expect(settings.decomposition(ofGlobalBatch: 4096) == (1, 256, 16))
    settings.accuracyWorkers = 2
    settings.microBatch = 128
    #expect(settings.decomposition(ofGlobalBatch: 64) == (2, 32, 1))
    #expect(settings.decomposition(ofGlobalBatch: 1024) == (2, 128, 4))
  }

  @Test func theDefaultPlanRunsEachDistinctTrainingOnce() {
    let plan = StudyPlan(settings: StudySettings())
    // 3 speed runs; 6 policies × 7 batches, less the 4 SGD baselines at G = n = 64 that are the K=1 speed run.
    #expect(plan.runs.count == 3 + 42 - 4)
    #expect(Set(plan.runs.map(\.id)).count == plan.runs.count)
    for policy in [StudyPolicy.linearWarmup, .linear, .none, .sqrt] {
      #expect(plan.cells[policy]?[64] == "speed-k1-r1")
    }
    #expect(plan.cells[.lars]?[64] == "acc-g64-lars")
    #expect(plan.cells[.lamb]?[64] == "acc-g64-lamb")
    for policy in StudyPolicy.allCases {
      #expect(plan.cells[policy]?.count == 7)
    }
    let run = plan.run(id: "acc-g4096-linear-warmup")!
    #expect(run.workers * run.batchSize * run.accumulate == 4096)
    #expect(run.trainArguments.contains("--accumulate"))
  }

  @Test func eachPolicyTrainsWithItsOwnOptions() {
    var settings = StudySettings()
    settings.training.trustCoefficient = 0.05
    let plan = StudyPlan(settings: settings)
    func option(_ id: String, _ name: String) -> String? {
      guard let arguments = plan.run(id: id)?.trainArguments,
        let index = arguments.firstIndex(of: name)
      else { return nil }
      return arguments[index + 1]
    }
    #expect(option("acc-g512-linear-warmup", "--lr-scaling") == "linear")
    #expect(option("acc-g512-linear-warmup", "--warmup-epochs") == "2")
    #expect(option("acc-g512-linear", "--warmup-epochs") == "0")
    #expect(option("acc-g512-none", "--lr-scaling") == "none")
    #expect(option("acc-g512-sqrt", "--lr-scaling") == "sqrt")
    #expect(option("acc-g512-lars", "--optimizer") == "lars")
    #expect(option("acc-g512-lars", "--trust-coefficient") == "0.05")
    #expect(option("acc-g512-linear", "--optimizer") == nil)
    #expect(option("speed-k4-r1", "--batch-size") == "64")
    #expect(plan.run(id: "speed-k4-r1")?.workers == 4)
  }

  @Test func speedRepeatsAreInterleaved() {
    var settings = StudySettings()
    settings.repeats = 2
    settings.speedEpochs = 1
    let ids = StudyPlan(settings: settings).runs.filter { $0.part == .speed }.map(\.id)
    #expect(
      ids == [
        "speed-k1-r1", "speed-k2-r1", "speed-k4-r1", "speed-k1-r2", "speed-k2-r2", "speed-k4-r2",
      ])
  }

  @Test func badSettingsNameTheirOption() {
    func failure(_ change: (inout StudySettings) -> Void) -> String? {
      var settings = StudySettings()
      change(&settings)
      do {
        try settings.validate()
        return nil
      } catch {
        return error.option  // typed throws: a ConfigurationError
      }
    }
    #expect(failure { _ in } == nil)
    #expect(failure { $0.workers = [] } == "--workers")
    #expect(failure { $0.workers = [1, 0] } == "--workers")
    #expect(failure { $0.globalBatches = [64, 64] } == "--global-batches")
    #expect(failure { $0.globalBatches = [100] } == nil)  // one micro-batch of 100
    #expect(
      failure {
        $0.microBatch = 64
        $0.globalBatches = [96]
      } == "--global-batches")
    #expect(failure { $0.policies = [] } == "--policies")
    #expect(failure { $0.training.trustCoefficient = 0 } == "--trust-coefficient")
    #expect(failure { $0.tolerance = -1 } == "--tolerance")
    #expect(failure { $0.epochs = 0 } == "--epochs")
    #expect(failure { $0.training.learningRate = .nan } == "--lr")
  }

  @Test func listsAndPoliciesParse() throws {
    #expect(try StudySettings.parseList("1, 2,4", option: "--workers") == [1, 2, 4])
    #expect(throws: ConfigurationError.self) {
      try StudySettings.parseList("1,,2", option: "--workers")
    }
    #expect(throws: ConfigurationError.self) {
      try StudySettings.parseList("1,x", option: "--workers")
    }
    #expect(try StudySettings.parsePolicies("lars,linear-warmup") == [.lars, .linearWarmup])
    do {
      _ = try StudySettings.parsePolicies("linear,cubic")
      Issue.record("cubic parsed")
    } catch {
      #expect(error.option == "--policies")
      #expect(error.found == "'cubic'")
    }
  }
}

/// The study's argv comes from `TrainOption.all`: every planned run's words parse back through the table into the
/// training the plan meant, so no run can name an option `train` does not have.
@Suite struct StudyArgumentsTests {
  @Test func everyRunsArgumentsParseBackToItsTraining() throws {
    var settings = StudySettings.quickDefaults
    settings.training.model = "seq:conv4k3p1,relu,pool2,flatten,linear10"
    settings.training.learningRate = 0.1
    settings.training.synthetic.trainCount = 4096
    for run in StudyPlan(settings: settings).runs {
      #expect(run.trainArguments.first == "train")
      var parsed = TrainingConfiguration()
      try TrainOption.apply(TrainOption.parse(Array(run.trainArguments.dropFirst())), to: &parsed)
      #expect(parsed.model == settings.training.model)
      #expect(parsed.learningRate == (run.policy == .lamb ? settings.lambLearningRate : 0.1))
      #expect(parsed.synthetic.trainCount == 4096)
      #expect(parsed.dataset == .synthetic)
      #expect(parsed.batchSize == run.batchSize && parsed.accumulate == run.accumulate)
      #expect(parsed.optimizer == (run.policy == .lars ? .lars : run.policy == .lamb ? .lamb : .sgd))
      // Every run states its optimizer's settings; LAMB has no momentum to state.
      #expect(parsed.weightDecay != nil)
      #expect((parsed.momentum == nil) == (run.policy == .lamb))
      #expect(throws: Never.self) { try parsed.validate() }
    }
  }
}
