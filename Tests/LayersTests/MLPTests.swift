import Foundation
import Testing

@testable import Layers
@testable import Tensors

@Suite struct MLPGradientTests {
  let spec = ModelSpec(layerSizes: [5, 4, 3, 3])
  let batch = 4
  let labels: [Int32] = [0, 2, 1, 2]

  @Test func accumulateGradientsMatchesFiniteDifferencesForEveryParameter() {
    let model = Sequential(spec: spec, maxBatch: 6, gradientStorage: FloatBuffer(count: spec.parameterCount + 2))
    model.initializeParameters(seed: 7)
    let input = Reference.randomFloats(batch * 5, seed: 31, in: -2...2)
    model.gradients[model.parameterCount] = 42  // the tail belongs to the caller
    model.gradients[model.parameterCount + 1] = -1
    model.zeroGradients()
    #expect(model.gradients[model.parameterCount] == 42)

    let scale: Float = 0.5
    let result = model.accumulateGradients(
      input: input, labels: labels, batch: batch, gradientScale: scale)

    let x = input.map(Double.init)
    let intLabels = labels.map(Int.init)
    let theta = model.parameters.array.map(Double.init)
    let f = { (p: [Double]) in
      Reference.loss(parameters: p, sizes: spec.layerSizes!, input: x, labels: intLabels)
    }
    let expected = Reference.gradient(of: f, at: theta)
    #expect(expected.contains { abs($0) > 1e-2 })
    for i in 0..<model.parameterCount {
      #expect(isClose(Double(model.gradients[i]), Double(scale) * expected[i]), "∂θ[\(i)]")
    }
    #expect(isClose(result.lossSum, f(theta), absolute: 1e-5, relative: 1e-6))
    let logits = Reference.logits(parameters: theta, sizes: spec.layerSizes!, input: x, batch: batch)
    let predicted = (0..<batch).map { i in (0..<3).max { logits[i * 3 + $0] < logits[i * 3 + $1] }!
    }
    #expect(result.correct == zip(predicted, intLabels).filter { $0 == $1 }.count)

    // A second call adds the same gradient again; the tail is untouched.
    let once = model.gradients.array
    let second = model.accumulateGradients(
      input: input, labels: labels, batch: batch, gradientScale: scale)
    #expect(second == result)
    for i in 0..<model.parameterCount {
      #expect(abs(model.gradients[i] - 2 * once[i]) <= 1e-6 * max(1, abs(once[i])))
    }
    #expect(
      model.gradients[model.parameterCount] == 42 && model.gradients[model.parameterCount + 1] == -1
    )

    // evaluate: same loss and count, no gradient change.
    let before = model.gradients.array
    #expect(model.evaluate(input: input, labels: labels, batch: batch) == result)
    #expect(model.gradients.array == before)
  }

  @Test func smallerBatchUsesOnlyItsRows() {
    let model = Sequential(spec: spec, maxBatch: 4)
    model.initializeParameters(seed: 3)
    let input = Reference.randomFloats(batch * 5, seed: 32)
    let full = model.evaluate(input: input, labels: labels, batch: 4)
    let first = model.evaluate(input: input, labels: labels, batch: 1)
    let expected = Reference.loss(
      parameters: model.parameters.array.map(Double.init), sizes: spec.layerSizes!,
      input: Array(input[0..<5]).map(Double.init), labels: [0])
    #expect(isClose(first.lossSum, expected, absolute: 1e-5, relative: 1e-6))
    #expect(first.lossSum < full.lossSum)
  }

  @Test func noHiddenLayerIsLogisticRegression() {
    let model = Sequential(spec: ModelSpec(layerSizes: [3, 2]), maxBatch: 2)
    model.initializeParameters(seed: 1)
    let input: [Float] = [0.5, -1, 2, 1, 1, -0.5]
    let labels: [Int32] = [1, 0]
    model.zeroGradients()
    _ = model.accumulateGradients(input: input, labels: labels, batch: 2, gradientScale: 1)
    let theta = model.parameters.array.map(Double.init)
    let expected = Reference.gradient(
      of: {
        Reference.loss(
          parameters: $0, sizes: [3, 2], input: input.map(Double.init), labels: [1, 0])
      }, at: theta)
    for i in theta.indices { #expect(isClose(Double(model.gradients[i]), expected[i])) }
  }
}

@Suite struct MLPInitializationTests {
  @Test func defaultSpecViewsMatchPyTorchStateDict() {
    let spec = ModelSpec(layerSizes: [784, 256, 128, 10])
    #expect(spec.parameterCount == 235_146)
    let model = Sequential(spec: spec, maxBatch: 1, gradientStorage: FloatBuffer(count: spec.parameterCount + 2))
    #expect(model.parameterCount == 235_146)
    #expect(model.parameters.count == 235_146)
    #expect(model.gradients.count == 235_148)
    let expected = [
      ParameterView(name: "0.weight", shape: [256, 784], offset: 0, count: 200_704),
      ParameterView(name: "0.bias", shape: [256], offset: 200_704, count: 256),
      ParameterView(name: "2.weight", shape: [128, 256], offset: 200_960, count: 32_768),
      ParameterView(name: "2.bias", shape: [128], offset: 233_728, count: 128),
      ParameterView(name: "4.weight", shape: [10, 128], offset: 233_856, count: 1280),
      ParameterView(name: "4.bias", shape: [10], offset: 235_136, count: 10),
    ]
    #expect(model.views == expected)
  }

  @Test func uniformWithinFanInBoundsWithRightMoments() {
    let model = Sequential(spec: ModelSpec(layerSizes: [784, 256, 128, 10]), maxBatch: 1)
    model.initializeParameters(seed: 2024)
    let fanIn = ["0": 784.0, "2": 256.0, "4": 128.0]
    for view in model.views {
      let bound = 1 / fanIn[String(view.name.prefix(1))]!.squareRoot()
      let values = (view.offset..<(view.offset + view.count)).map { Double(model.parameters[$0]) }
      #expect(values.allSatisfy { abs($0) <= bound }, "\(view.name) within ±\(bound)")
      // Both ends are reached: a narrower range (say another layer's fan_in) fails this.
      #expect(
        values.max()! > 0.9 * bound && values.min()! < -0.9 * bound, "\(view.name) spans its range")
      if view.count >= 1000 {
        let n = Double(view.count)
        let mean = values.reduce(0, +) / n
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n
        // U(-a, a): mean 0 (σ of the sample mean is a/√(3n)), variance a²/3 (relative σ of the sample
        // variance √(0.8/n), since Var(X²)/E[X²]² = (4a⁴/45)/(a⁴/9)). Five σ either way.
        #expect(abs(mean) < 5 * bound / (3 * n).squareRoot(), "\(view.name) mean \(mean)")
        #expect(
          abs(variance / (bound * bound / 3) - 1) < 5 * (0.8 / n).squareRoot(),
          "\(view.name) variance \(variance)")
      }
    }
  }

  @Test func drawnFromTheInitializationStreamInViewOrder() {
    let model = Sequential(spec: ModelSpec(layerSizes: [3, 2, 2]), maxBatch: 1)
    model.initializeParameters(seed: 9)
    var generator = Xoshiro256(seed: 9, stream: RandomStream.initialization)
    let a0 = Float(1 / 3.0.squareRoot())
    let a1 = Float(1 / 2.0.squareRoot())
    let expected =
      (0..<8).map { _ in generator.nextFloat(in: -a0, a0) }
      + (0..<6).map { _ in generator.nextFloat(in: -a1, a1) }
    #expect(model.parameters.array == expected)
  }

  @Test func seedDeterminesParameters() {
    let spec = ModelSpec(layerSizes: [20, 8, 4])
    let a = Sequential(spec: spec, maxBatch: 1)
    let b = Sequential(spec: spec, maxBatch: 1)
    let c = Sequential(spec: spec, maxBatch: 1)
    a.initializeParameters(seed: 5)
    b.initializeParameters(seed: 5)
    c.initializeParameters(seed: 6)
    #expect(a.parameters.array == b.parameters.array)
    #expect(a.parameters.array != c.parameters.array)
    #expect(a.parameters.array.contains { $0 != 0 })
  }
}
