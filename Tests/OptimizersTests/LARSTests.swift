import Foundation
import Testing

@testable import Layers
@testable import Optimizers
@testable import Tensors

@Suite struct LARSTests {
  /// A 2×2 weight "0.weight" (offset 0) and a bias "0.bias" of 2 (offset 4).
  let layers = [
    ParameterView(name: "0.weight", shape: [2, 2], offset: 0, count: 4),
    ParameterView(name: "0.bias", shape: [2], offset: 4, count: 2),
  ]

  @Test func firstStepMatchesHandComputation() {
    // w = (3, 0, 0, 4): ‖w‖ = 5; g = (0.6, 0, 0, 0.8): ‖g‖ = 1; wd = 0.1, tr = 0.01.
    // η = 0.01·5/(1 + 0.1·5) = 1/30; d = g + 0.1·w = (0.9, 0, 0, 1.2); v = η·d = (0.03, 0, 0, 0.04);
    // w' = w − 0.5·v = (2.985, 0, 0, 3.98). Bias: plain SGD, d = (0.5 + 0.1·1, −0.2 + 0.1·(−2)) = (0.6, −0.4),
    // v = d, w' = (1, −2) − 0.5·d = (0.7, −1.8).
    let lars = LARS(
      parameterCount: 6, layers: layers,
      options: LARSOptions(momentum: 0.9, weightDecay: 0.1, trustCoefficient: 0.01))
    var w: [Float] = [3, 0, 0, 4, 1, -2]
    let g: [Float] = [0.6, 0, 0, 0.8, 0.5, -0.2]
    lars.step(parameters: &w, gradients: g, learningRate: 0.5)
    let expected: [Double] = [2.985, 0, 0, 3.98, 0.7, -1.8]
    for i in w.indices {
      #expect(abs(Double(w[i]) - expected[i]) < 1e-6, "w[\(i)] = \(w[i]), expected \(expected[i])")
    }
    #expect(abs(lars.lastTrustRatios[0] - 1.0 / 30) < 1e-8)  // g is Float: 0.6, 0.8 are not exact
    #expect(lars.lastTrustRatios[1] == 1)
    let v: [Double] = [0.03, 0, 0, 0.04, 0.6, -0.4]
    for i in v.indices { #expect(abs(Double(lars.momentumBuffer[i]) - v[i]) < 1e-6, "v[\(i)]") }
  }

  @Test func secondStepAddsMomentumOnTopOfTheScaledUpdate() {
    // No weight decay, tr = 0.1, lr = 1, μ = 0.5, g = (0, 0, 0, 1) twice.
    // Step 1: w = (3, 0, 0, 4), ‖w‖ = 5, ‖g‖ = 1 → η = 0.5; v = (0, 0, 0, 0.5); w = (3, 0, 0, 3.5).
    // Step 2: ‖w‖ = √(9 + 12.25) = √21.25 → η = 0.1·√21.25; v = 0.5·0.5 + η; w₄ = 3.5 − v.
    let lars = LARS(
      parameterCount: 6, layers: layers,
      options: LARSOptions(momentum: 0.5, weightDecay: 0, trustCoefficient: 0.1))
    var w: [Float] = [3, 0, 0, 4, 0, 0]
    let g: [Float] = [0, 0, 0, 1, 0, 0]
    lars.step(parameters: &w, gradients: g, learningRate: 1)
    #expect(abs(Double(w[3]) - 3.5) < 1e-6)
    lars.step(parameters: &w, gradients: g, learningRate: 1)
    let eta2 = 0.1 * 21.25.squareRoot()
    let v2 = 0.25 + eta2
    #expect(abs(Double(w[3]) - (3.5 - v2)) < 1e-6)
    #expect(abs(Double(lars.momentumBuffer[3]) - v2) < 1e-6)
    #expect(w[0] == 3 && w[1] == 0 && w[2] == 0)
  }

  @Test(arguments: [
    LARSOptions(momentum: 0, weightDecay: 0, trustCoefficient: 0.001),
    LARSOptions(momentum: 0.9, weightDecay: 5e-4, trustCoefficient: 0.001),
    LARSOptions(momentum: 0.9, weightDecay: 0.05, trustCoefficient: 0.02),
    LARSOptions(momentum: 0.5, weightDecay: 0.01, trustCoefficient: 0.1, nesterov: true),
  ])
  func matchesDoubleReferenceWithChangingGradients(options: LARSOptions) {
    // An MLP's real views: 3-4-2 gives 0.weight [4,3], 0.bias [4], 2.weight [2,4], 2.bias [2].
    let model = Sequential(spec: ModelSpec(layerSizes: [3, 4, 2]), maxBatch: 1)
    let count = model.parameterCount
    let lars = LARS(parameterCount: count, layers: model.views, options: options)
    var generator = Xoshiro256(seed: 5)
    var w = (0..<count).map { _ in generator.nextFloat(in: -1, 1) }
    var wRef = w.map(Double.init)
    var vRef = [Double](repeating: 0, count: count)
    for step in 0..<6 {
      let g = (0..<count).map { _ in generator.nextFloat(in: -1, 1) * 0.3 }
      let lr = Float(2) / Float(step + 1)
      lars.step(parameters: &w, gradients: g, learningRate: lr)
      for view in model.views {
        let range = view.offset..<(view.offset + view.count)
        var eta = 1.0
        if view.shape.count == 2 {
          let wNorm = range.map { wRef[$0] * wRef[$0] }.reduce(0, +).squareRoot()
          let gNorm = range.map { Double(g[$0]) * Double(g[$0]) }.reduce(0, +).squareRoot()
          eta = options.trustCoefficient * wNorm / (gNorm + options.weightDecay * wNorm)
        }
        for i in range {
          let d = eta * (Double(g[i]) + options.weightDecay * wRef[i])
          vRef[i] = options.momentum * vRef[i] + d
          let update =
            options.momentum == 0
            ? d : (options.nesterov ? d + options.momentum * vRef[i] : vRef[i])
          wRef[i] -= Double(lr) * update
        }
      }
    }
    for i in 0..<count {
      #expect(abs(Double(w[i]) - wRef[i]) < 1e-5, "w[\(i)] \(w[i]) vs \(wRef[i])")
    }
  }

  @Test func biasesGetExactlySGDsUpdate() {
    let options = LARSOptions(momentum: 0.9, weightDecay: 5e-4, trustCoefficient: 0.001)
    let lars = LARS(parameterCount: 6, layers: layers, options: options)
    let sgd = SGD(parameterCount: 2, options: SGDOptions(momentum: 0.9, weightDecay: 5e-4))
    var w: [Float] = [0.3, -0.1, 0.2, 0.4, 0.25, -0.75]
    var bias: [Float] = [0.25, -0.75]
    var generator = Xoshiro256(seed: 9)
    for _ in 0..<4 {
      let g = (0..<6).map { _ in generator.nextFloat(in: -1, 1) }
      lars.step(parameters: &w, gradients: g, learningRate: 0.1)
      sgd.step(parameters: &bias, gradients: Array(g[4...]), learningRate: 0.1)
    }
    #expect(Array(w[4...]) == bias)  // bit for bit
  }

  @Test func withoutWeightDecayTheStepIgnoresTheGradientsScale() {
    // η·g = tr·‖w‖·g/‖g‖: multiplying g by 1000 changes nothing (the point of LARS).
    let options = LARSOptions(momentum: 0, weightDecay: 0, trustCoefficient: 0.01)
    var small: [Float] = [1, 2, 3, 4, 0, 0]
    var large = small
    let g: [Float] = [0.01, -0.02, 0.03, 0.005, 0, 0]
    LARS(parameterCount: 6, layers: layers, options: options).step(
      parameters: &small, gradients: g, learningRate: 1)
    LARS(parameterCount: 6, layers: layers, options: options)
      .step(parameters: &large, gradients: g.map { $0 * 1000 }, learningRate: 1)
    for i in 0..<4 { #expect(abs(small[i] - large[i]) < 1e-6) }
  }

  @Test func zeroNormsUseARatioOfOne() {
    #expect(
      LARS.trustRatio(weightNorm: 0, gradientNorm: 1, trustCoefficient: 0.001, weightDecay: 0) == 1)
    #expect(
      LARS.trustRatio(weightNorm: 2, gradientNorm: 0, trustCoefficient: 0.001, weightDecay: 0.1)
        == 1)
    let lars = LARS(
      parameterCount: 6, layers: layers,
      options: LARSOptions(momentum: 0.9, weightDecay: 0, trustCoefficient: 0.001))
    var w: [Float] = [0, 0, 0, 0, 0, 0]
    lars.step(parameters: &w, gradients: [1, 1, 1, 1, 1, 1], learningRate: 0.1)
    #expect(w.allSatisfy { $0.isFinite && abs($0 + 0.1) < 1e-7 })
  }
}
