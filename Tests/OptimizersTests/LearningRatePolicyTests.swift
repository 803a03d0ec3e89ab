import Foundation
import Testing

@testable import Optimizers

@Suite struct LearningRatePolicyTests {
  /// η = 0.05 at n = 64, global batch 256 (r = 4), 100 steps per epoch, 1000 steps.
  func policy(
    _ scaling: LRScaling, warmup: Double = 2, decay: LRDecay = .constant, stepsPerEpoch: Int = 100,
    totalSteps: Int = 1000
  ) -> LearningRatePolicy {
    LearningRatePolicy(
      baseLearningRate: 0.05, baseBatch: 64, globalBatch: 256, scaling: scaling, warmupEpochs: warmup,
      decay: decay,
      stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
  }

  func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-12 * max(1, abs(b)) }

  @Test(arguments: [(LRScaling.linear, 0.2), (.sqrt, 0.1), (.none, 0.05)])
  func warmupRampsFromBaseToPeak(scaling: LRScaling, peak: Double) {
    let p = policy(scaling)
    #expect(close(p.peakLR, peak))
    #expect(p.warmupSteps == 200)
    #expect(close(p.learningRate(atStep: 0), 0.05))
    #expect(close(p.learningRate(atStep: 50), 0.05 + (peak - 0.05) * 0.25))
    #expect(close(p.learningRate(atStep: 100), (0.05 + peak) / 2))
    #expect(close(p.learningRate(atStep: 199), 0.05 + (peak - 0.05) * 199 / 200))
    #expect(close(p.learningRate(atStep: 200), peak))
    #expect(close(p.learningRate(atStep: 201), peak))
    #expect(close(p.learningRate(atStep: 999), peak))
  }

  @Test func cosineAfterWarmup() {
    let p = policy(.linear, decay: .cosine)
    #expect(close(p.learningRate(atStep: 200), 0.2))
    #expect(close(p.learningRate(atStep: 600), 0.1))  // halfway through the 800 decay steps
    #expect(close(p.learningRate(atStep: 400), 0.2 * 0.5 * (1 + cos(Double.pi / 4))))
    #expect(abs(p.learningRate(atStep: 1000)) < 1e-15)
    #expect(abs(p.learningRate(atStep: 1200)) < 1e-15)  // stays at 0 past the end
    let last = p.learningRate(atStep: 999)
    #expect(last > 0 && close(last, 0.2 * 0.5 * (1 + cos(Double.pi * 799 / 800))))
  }

  @Test func cosineWithoutWarmupStartsAtPeak() {
    let p = policy(.sqrt, warmup: 0, decay: .cosine)
    #expect(p.warmupSteps == 0)
    #expect(close(p.learningRate(atStep: 0), 0.1))
    #expect(close(p.learningRate(atStep: 500), 0.05))
  }

  @Test func stepMilestones() {
    let p = policy(.linear, decay: .step(milestones: [3, 5.5]))
    #expect(p.milestoneSteps == [300, 550])
    #expect(close(p.learningRate(atStep: 0), 0.05))
    #expect(close(p.learningRate(atStep: 299), 0.2))
    #expect(close(p.learningRate(atStep: 300), 0.02))
    #expect(close(p.learningRate(atStep: 549), 0.02))
    #expect(close(p.learningRate(atStep: 550), 0.002))
    #expect(close(p.learningRate(atStep: 999), 0.002))
  }

  @Test func zeroWarmupIsPeakFromStepZero() {
    let p = policy(.linear, warmup: 0)
    #expect(p.warmupSteps == 0)
    #expect(close(p.learningRate(atStep: 0), 0.2))
    #expect(close(p.learningRate(atStep: 1), 0.2))
  }

  @Test func fractionalWarmupRoundsToSteps() {
    let p = policy(.linear, warmup: 0.255)  // 25.5 steps → 26
    #expect(p.warmupSteps == 26)
    #expect(close(p.learningRate(atStep: 13), 0.125))
    #expect(close(p.learningRate(atStep: 25), 0.05 + 0.15 * 25 / 26))
    #expect(close(p.learningRate(atStep: 26), 0.2))
    #expect(policy(.linear, warmup: 0.5, stepsPerEpoch: 937).warmupSteps == 469)  // 468.5 → 469
  }

  @Test func summaryLine() {
    let p = LearningRatePolicy(
      baseLearningRate: 0.05, baseBatch: 64, globalBatch: 256, scaling: .linear, warmupEpochs: 2,
      decay: .cosine,
      stepsPerEpoch: 937, totalSteps: 9370)
    #expect(
      p.summaryLines == [
        "lr policy: η=0.05 at n=64, linear scaling ×4 → peak 0.2; warmup 2 epochs (1874 steps) from 0.05; "
          + "then cosine to 0 at step 9370"
      ])
    let other = policy(.sqrt, warmup: 0, decay: .step(milestones: [3, 5.5])).summaryLines.joined()
    #expect(other.contains("sqrt scaling ×√4 → peak 0.1") && other.contains("no warmup"))
    #expect(other.contains("epoch 5.5 (step 550)"))
  }

  @Test func validateNamesTheOption() {
    var p = policy(.linear)
    #expect(throws: Never.self) { try p.validate() }
    p.warmupEpochs = -1
    #expect { try p.validate() } throws: { String(describing: $0).contains("--warmup-epochs") }
    p = policy(.linear)
    p.baseLearningRate = 0
    #expect { try p.validate() } throws: { String(describing: $0).contains("--lr") }
  }

  @Test func policyRoundTripsThroughJSON() throws {
    let p = policy(.sqrt, warmup: 0.5, decay: .step(milestones: [1.5, 3]))
    let data = try JSONEncoder().encode(p)
    #expect(String(decoding: data, as: UTF8.self).contains("\"step:1.5,3\""))
    #expect(try JSONDecoder().decode(LearningRatePolicy.self, from: data) == p)
  }
}

@Suite struct LRDecayParsingTests {
  @Test(arguments: [
    ("constant", LRDecay.constant), ("cosine", .cosine),
    ("step:30,60", .step(milestones: [30, 60])),
    ("step:0.5,1.25", .step(milestones: [0.5, 1.25])), ("Cosine", .cosine),
  ])
  func parsesAndRoundTrips(text: String, decay: LRDecay) throws {
    #expect(try LRDecay(parsing: text) == decay)
    #expect(try LRDecay(parsing: decay.description) == decay)
  }

  @Test func descriptions() {
    #expect(LRDecay.step(milestones: [30, 60]).description == "step:30,60")
    #expect(LRDecay.step(milestones: [0.5]).description == "step:0.5")
    #expect(LRDecay.cosine.description == "cosine")
  }

  @Test(arguments: [
    ("linear", "'linear'"), ("step:", "at least one milestone"), ("step:a", "'a' is not a number"),
    ("step:0", "must be > 0"), ("step:-1", "must be > 0"), ("step:60,30", "must increase"),
    ("step:30,,60", "an empty entry"), ("step:inf", "not a number"),
  ])
  func rejects(text: String, problem: String) {
    #expect {
      try LRDecay(parsing: text)
    } throws: { error in
      let message = String(describing: error)
      return message.contains("--schedule") && message.contains(problem)
        && message.contains("'cosine'")
    }
  }
}
