import Checkpoints
import Foundation
import Testing

@testable import Layers
@testable import Optimizers
@testable import Tensors

/// AdamW and LAMB against Fixtures/optimizer_fixture.safetensors, written by Fixtures/make_optimizer_fixture.py:
/// torch.optim.AdamW itself, and apex FusedLAMB's kernel transcribed in float32 torch arithmetic, six steps each
/// on five small tensors with weight decay, a changing learning rate, and gradients whose global norm is above
/// LAMB's max_grad_norm for three steps and below it for three.
@Suite struct AdamWLAMBFixtureTests {
  static let views: [ParameterView] = {
    var offset = 0
    return [("0.weight", [4, 3]), ("0.bias", [4]), ("1.weight", [2, 4]), ("1.bias", [2]), ("2.weight", [3])].map {
      let count = $0.1.reduce(1, *)
      defer { offset += count }
      return ParameterView(name: $0.0, shape: $0.1, offset: offset, count: count)
    }
  }()
  static let count = views.reduce(0) { $0 + $1.count }
  let fixture: [String: [Float]]

  init() throws {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("Fixtures/optimizer_fixture.safetensors")
    let tensors = try SafeTensors.decode([UInt8](try Data(contentsOf: url)), path: url.path).tensors
    fixture = Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0.values) })
  }

  /// The flat buffer of `prefix + name` for every view.
  func flat(_ prefix: String, suffix: String = "") throws -> [Float] {
    try Self.views.flatMap { try #require(fixture[prefix + $0.name + suffix], "no \(prefix + $0.name + suffix)") }
  }

  /// Runs `optimizer` through the fixture's six steps and compares the parameters and both moments after each
  /// with case `name`'s. Agreement is to float rounding: PyTorch's vectorised kernels fuse some multiply-adds, and
  /// the reference norms accumulate differently; the bound is far below one step's change (lr ≥ 0.005).
  func check(_ name: String, _ optimizer: some Optimizer, tolerance: Double = 5e-7) throws {
    var w = try flat("init.")
    let lr = try #require(fixture["lr"])
    var worst = 0.0
    for t in 0..<6 {
      let g = try flat("grad.\(t).")
      #expect(optimizer.step(parameters: &w, gradients: g, learningRate: lr[t]))
      let states = optimizer.state
      for (values, expected) in [
        (w, try flat("\(name).\(t).")),
        (states[0].buffer.array, try flat("\(name).\(t).", suffix: ".exp_avg")),
        (states[1].buffer.array, try flat("\(name).\(t).", suffix: ".exp_avg_sq")),
      ] {
        for i in values.indices {
          let error = abs(Double(values[i]) - Double(expected[i])) / (1 + abs(Double(expected[i])))
          worst = max(worst, error)
          #expect(error < tolerance, "\(name) step \(t + 1) [\(i)]: \(values[i]) against \(expected[i])")
        }
      }
    }
    #expect(optimizer.stepCount == 6)
    print("\(name): largest difference from PyTorch \(worst)")
  }

  @Test func adamwMatchesTorch() throws {
    try check("adamw", AdamW(parameterCount: Self.count, options: AdamOptions(eps: 1e-8, weightDecay: 0.05)))
  }

  @Test func adamwWithoutBiasDecayMatchesTorchParameterGroups() throws {
    try check(
      "adamw_nobias",
      AdamW(
        parameterCount: Self.count, options: AdamOptions(eps: 1e-8, weightDecay: 0.05),
        decay: WeightDecayCoverage(views: Self.views, biases: false)))
  }

  @Test func adamwWithOtherBetasMatchesTorch() throws {
    try check(
      "adamw_betas",
      AdamW(parameterCount: Self.count, options: AdamOptions(beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.1)))
  }

  @Test func lambMatchesApexArithmetic() throws {
    let lamb = LAMB(parameterCount: Self.count, tensors: Self.views, options: AdamOptions(eps: 1e-6, weightDecay: 0.01))
    try check("lamb", lamb)
    #expect(lamb.lastTrustRatios.allSatisfy { $0 != 1 })
  }

  @Test func lambWithoutBiasDecaySkipsTheirTrustRatio() throws {
    let lamb = LAMB(
      parameterCount: Self.count, tensors: Self.views, options: AdamOptions(eps: 1e-6, weightDecay: 0.01),
      decaysBiases: false)
    try check("lamb_nobias", lamb)
    #expect(lamb.lastTrustRatios.enumerated().allSatisfy { ($1 == 1) == (Self.views[$0].shape.count == 1) })
  }

  /// The case's own runs differ where they should: without bias decay only the rank-1 tensors change.
  @Test func biasDecayChangesOnlyTheRankOneTensors() throws {
    let with = try flat("adamw.5.")
    let without = try flat("adamw_nobias.5.")
    for view in Self.views {
      let range = view.offset..<(view.offset + view.count)
      #expect((with[range] == without[range]) == (view.shape.count >= 2), "\(view.name)")
    }
  }
}

@Suite struct AdamWTwoAddendTests {
  /// The two-addend form (what the shared-memory pair exchange leaves) is bit for bit the update on the summed
  /// buffer, with and without bias decay.
  @Test(arguments: [true, false]) func twoAddendsAreTheSummedBuffer(biases: Bool) {
    let views = AdamWLAMBFixtureTests.views
    let count = AdamWLAMBFixtureTests.count
    var generator = Xoshiro256(seed: 7)
    let w0 = (0..<count).map { _ in generator.nextFloat(in: -0.5, 0.5) }
    let decay = WeightDecayCoverage(views: views, biases: biases)
    let fused = AdamW(parameterCount: count, options: AdamOptions(), decay: decay)
    let summed = AdamW(parameterCount: count, options: AdamOptions(), decay: decay)
    var (a, b) = (w0, w0)
    for step in 0..<4 {
      let first = (0..<count).map { _ in generator.nextFloat(in: -0.5, 0.5) }
      let second = (0..<count).map { _ in generator.nextFloat(in: -0.5, 0.5) }
      let lr = Float(0.01 * Double(step + 1))
      fused.step(parameters: &a, gradients: first, plus: second, learningRate: lr)
      summed.step(parameters: &b, gradients: zip(first, second).map { $0 + $1 }, learningRate: lr)
    }
    #expect(a.map(\.bitPattern) == b.map(\.bitPattern))
    #expect(fused.secondMoment.array.map(\.bitPattern) == summed.secondMoment.array.map(\.bitPattern))
  }

  @Test func aNonFiniteGradientIsReported() {
    let adamw = AdamW(parameterCount: 3, options: AdamOptions())
    var w: [Float] = [1, 2, 3]
    #expect(!adamw.step(parameters: &w, gradients: [0, .nan, 0], learningRate: 0.1))
    let lamb = LAMB(
      parameterCount: 3, tensors: [ParameterView(name: "w", shape: [3], offset: 0, count: 3)], options: AdamOptions())
    #expect(!lamb.step(parameters: &w, gradients: [0, .infinity, 0], learningRate: 0.1))
  }
}
