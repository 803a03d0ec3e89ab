import Foundation
import Testing

@testable import Optimizers
@testable import Tensors

@Suite struct SGDTests {
  /// Runs `steps` updates with the same gradient `g` for every element; returns the final parameters.
  func run(_ options: SGDOptions, w0: [Float], g: [Float], lr: Float, steps: Int) -> (
    w: [Float], v: [Float]
  ) {
    let sgd = SGD(parameterCount: w0.count, options: options)
    var w = w0
    for _ in 0..<steps { sgd.step(parameters: &w, gradients: g, learningRate: lr) }
    return (w, sgd.momentumBuffer.array)
  }

  let w0: [Float] = [1, -2, 0.5, 3]
  let g: [Float] = [0.1, -0.3, 0.7, 0]
  let lr: Float = 0.05
  let steps = 7

  @Test func plainSGDIsWMinusTLRG() {
    let (w, v) = run(SGDOptions(), w0: w0, g: g, lr: lr, steps: steps)
    for i in w0.indices {
      let expected = Double(w0[i]) - Double(steps) * Double(lr) * Double(g[i])
      #expect(abs(Double(w[i]) - expected) < 1e-5)
    }
    #expect(v == [0, 0, 0, 0])  // unused without momentum
  }

  @Test func momentumMatchesClosedForm() {
    // v_t = Σ_{i<t} μ^i g = g(1 − μ^t)/(1 − μ);  w_T = w0 − lr Σ_{t=1}^{T} v_t.
    let mu = 0.9
    let (w, v) = run(SGDOptions(momentum: mu), w0: w0, g: g, lr: lr, steps: steps)
    let velocities = (1...steps).map { (1 - pow(mu, Double($0))) / (1 - mu) }
    for i in w0.indices {
      let expected = Double(w0[i]) - Double(lr) * Double(g[i]) * velocities.reduce(0, +)
      #expect(abs(Double(w[i]) - expected) < 1e-5, "w[\(i)] \(w[i]) vs \(expected)")
      #expect(abs(Double(v[i]) - Double(g[i]) * velocities.last!) < 1e-5)
    }
  }

  @Test func nesterovMatchesClosedForm() {
    // d_t = g + μ v_t with v_t as above.
    let mu = 0.8
    let (w, _) = run(SGDOptions(momentum: mu, nesterov: true), w0: w0, g: g, lr: lr, steps: steps)
    let updates = (1...steps).map { 1 + mu * (1 - pow(mu, Double($0))) / (1 - mu) }
    for i in w0.indices {
      let expected = Double(w0[i]) - Double(lr) * Double(g[i]) * updates.reduce(0, +)
      #expect(abs(Double(w[i]) - expected) < 1e-5, "w[\(i)] \(w[i]) vs \(expected)")
    }
  }

  @Test func weightDecayAloneShrinksGeometrically() {
    // g = 0: w_T = w0 (1 − lr·wd)^T.
    let wd = 0.1
    let (w, _) = run(SGDOptions(weightDecay: wd), w0: w0, g: [0, 0, 0, 0], lr: lr, steps: steps)
    for i in w0.indices {
      let expected = Double(w0[i]) * pow(1 - Double(lr) * wd, Double(steps))
      #expect(abs(Double(w[i]) - expected) < 1e-5)
    }
  }

  @Test(arguments: [
    SGDOptions(), SGDOptions(weightDecay: 0.01), SGDOptions(momentum: 0.9),
    SGDOptions(momentum: 0.9, weightDecay: 0.05),
    SGDOptions(momentum: 0.5, weightDecay: 0.02, nesterov: true),
  ])
  func matchesDoubleReferenceWithChangingGradients(options: SGDOptions) {
    let count = 6
    var generator = Xoshiro256(seed: 77)
    var w = (0..<count).map { _ in generator.nextFloat(in: -1, 1) }
    var wRef = w.map(Double.init)
    var vRef = [Double](repeating: 0, count: count)
    let sgd = SGD(parameterCount: count, options: options)
    for step in 0..<5 {
      let g = (0..<count).map { _ in generator.nextFloat(in: -1, 1) }
      let lr = Float(0.1) / Float(step + 1)
      sgd.step(parameters: &w, gradients: g, learningRate: lr)
      // torch.optim.SGD, written out in Double.
      for i in 0..<count {
        var d = Double(g[i]) + options.weightDecay * wRef[i]
        if options.momentum != 0 {
          vRef[i] = step == 0 ? d : options.momentum * vRef[i] + d
          d = options.nesterov ? d + options.momentum * vRef[i] : vRef[i]
        }
        wRef[i] -= Double(lr) * d
      }
    }
    for i in 0..<count {
      #expect(abs(Double(w[i]) - wRef[i]) < 1e-5, "w[\(i)]")
      if options.momentum != 0 {
        #expect(abs(Double(sgd.momentumBuffer[i]) - vRef[i]) < 1e-5, "v[\(i)]")
      }
    }
  }

  @Test func firstMomentumStepCopiesTheGradientExactly() {
    let options = SGDOptions(momentum: 0.9, weightDecay: 0.01)
    let sgd = SGD(parameterCount: 4, options: options)
    var w = w0
    sgd.step(parameters: &w, gradients: g, learningRate: lr)
    let wd = Float(options.weightDecay)
    #expect(sgd.momentumBuffer.array == zip(g, w0).map { $0 + wd * $1 })
  }

  @Test func optionsRoundTripThroughJSON() throws {
    let options = SGDOptions(momentum: 0.9, weightDecay: 5e-4, nesterov: true)
    #expect(
      try JSONDecoder().decode(SGDOptions.self, from: JSONEncoder().encode(options)) == options)
  }
}

/// The update runs in a C kernel picked per CPU (AVX-512, AVX2 or baseline): it must round exactly like the
/// scalar Float arithmetic of torch.optim.SGD, one rounding per operation, over a vector body and a scalar tail.
@Suite struct SGDKernelTests {
  let count = 1037  // 64·16 + 13

  @Test(arguments: [
    SGDOptions(), SGDOptions(weightDecay: 0.01), SGDOptions(momentum: 0.9, weightDecay: 5e-4),
    SGDOptions(momentum: 0.5, weightDecay: 0.02, nesterov: true),
  ])
  func matchesScalarFloatArithmeticBitForBit(options: SGDOptions) {
    var generator = Xoshiro256(seed: 91)
    var w = (0..<count).map { _ in generator.nextFloat(in: -1, 1) }
    var wRef = w
    var vRef = [Float](repeating: 0, count: count)
    let (wd, mu) = (Float(options.weightDecay), Float(options.momentum))
    let sgd = SGD(parameterCount: count, options: options)
    for step in 0..<4 {
      let g = (0..<count).map { _ in generator.nextFloat(in: -1, 1) }
      let lr = Float(0.3) / Float(step + 1)
      #expect(sgd.step(parameters: &w, gradients: g, learningRate: lr))
      for i in 0..<count {
        let d = g[i] + wd * wRef[i]
        guard mu != 0 else {
          wRef[i] = wRef[i] - lr * d
          continue
        }
        let product = mu * vRef[i]  // one rounding each: no fused multiply-add
        vRef[i] = product + d
        let direction = options.nesterov ? d + mu * vRef[i] : vRef[i]
        wRef[i] = wRef[i] - lr * direction
      }
    }
    func differing(_ a: [Float], _ b: [Float]) -> Int { zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count }
    #expect(differing(w, wRef) == 0, "parameters differing from the scalar reference")
    if mu != 0 { #expect(differing(sgd.momentumBuffer.array, vRef) == 0, "momentum differing") }
  }

  @Test(arguments: [SGDOptions(), SGDOptions(momentum: 0.9), SGDOptions(momentum: 0.9, nesterov: true)])
  func reportsANonFiniteGradient(options: SGDOptions) {
    for position in [7, 600, 1036] {
      let sgd = SGD(parameterCount: count, options: options)
      var w = [Float](repeating: 0.5, count: count)
      var g = [Float](repeating: 0.25, count: count)
      #expect(sgd.step(parameters: &w, gradients: g, learningRate: 0.1))
      g[position] = position == 600 ? .infinity : .nan
      #expect(!sgd.step(parameters: &w, gradients: g, learningRate: 0.1), "bad gradient at \(position)")
    }
  }

  /// The update that adds two ranks' gradients in its own pass (`SharedMemoryPairReducer`'s) against summing them
  /// into a buffer first and updating from it: the same bits, every variant, lengths with and without a vector
  /// tail; and a NaN in either addend is reported.
  @Test(arguments: [
    SGDOptions(), SGDOptions(weightDecay: 0.01), SGDOptions(momentum: 0.9, weightDecay: 5e-4),
    SGDOptions(momentum: 0.5, weightDecay: 0.02, nesterov: true),
  ])
  func twoAddendsEqualTheSummedGradient(options: SGDOptions) {
    for count in [5, 37, 1037] {
      var generator = Xoshiro256(seed: 91)
      let start = (0..<count).map { _ in generator.nextFloat(in: -1, 1) }
      var summedW = start
      var fusedW = start
      let summed = SGD(parameterCount: count, options: options)
      let fused = SGD(parameterCount: count, options: options)
      for step in 0..<4 {
        // Magnitudes apart, so that the rounding of first + second shows.
        let first = (0..<count).map { _ in generator.nextFloat(in: -1, 1) * 3e3 }
        let second = (0..<count).map { _ in generator.nextFloat(in: -1, 1) * 1e-3 }
        let sum = zip(first, second).map { $0 + $1 }
        let lr = Float(0.1) / Float(step + 1)
        #expect(summed.step(parameters: &summedW, gradients: sum, learningRate: lr))
        #expect(fused.step(parameters: &fusedW, gradients: first, plus: second, learningRate: lr))
        #expect(fusedW.map(\.bitPattern) == summedW.map(\.bitPattern), "\(count) elements, step \(step)")
        #expect(fused.momentumBuffer.array.map(\.bitPattern) == summed.momentumBuffer.array.map(\.bitPattern))
      }
      var withNaN = (0..<count).map { _ in Float(0.5) }
      withNaN[count - 1] = .nan
      let zeros = [Float](repeating: 0, count: count)
      var w = start
      #expect(!fused.step(parameters: &w, gradients: zeros, plus: withNaN, learningRate: 0.1))
      #expect(!fused.step(parameters: &w, gradients: withNaN, plus: zeros, learningRate: 0.1))
    }
  }
}
