import Testing

@testable import Layers
@testable import Tensors

@Suite struct LinearTests {
  let batch = 3
  let inFeatures = 4
  let outFeatures = 5

  /// L(x, W, b) = Σ R ⊙ (x·Wᵀ + b) in Double, so ∂L/∂y = R.
  func objective(x: [Double], w: [Double], b: [Double], r: [Double]) -> Double {
    var total = 0.0
    for i in 0..<batch {
      for o in 0..<outFeatures {
        var y = b[o]
        for j in 0..<inFeatures { y += x[i * inFeatures + j] * w[o * inFeatures + j] }
        total += r[i * outFeatures + o] * y
      }
    }
    return total
  }

  @Test func forwardMatchesReference() {
    let x = Reference.randomFloats(batch * inFeatures, seed: 1)
    let w = Reference.randomFloats(outFeatures * inFeatures, seed: 2)
    let b = Reference.randomFloats(outFeatures, seed: 3)
    var y = [Float](repeating: .nan, count: batch * outFeatures)
    Linear.forward(
      x: x, weight: w, bias: b, y: &y, batch: batch, inFeatures: inFeatures,
      outFeatures: outFeatures)
    var yReLU = y
    Linear.forwardReLU(
      x: x, weight: w, bias: b, y: &yReLU, batch: batch, inFeatures: inFeatures,
      outFeatures: outFeatures)
    for i in 0..<batch {
      for o in 0..<outFeatures {
        var expected = Double(b[o])
        for j in 0..<inFeatures {
          expected += Double(x[i * inFeatures + j]) * Double(w[o * inFeatures + j])
        }
        #expect(isClose(Double(y[i * outFeatures + o]), expected, absolute: 1e-6))
        #expect(isClose(Double(yReLU[i * outFeatures + o]), max(expected, 0), absolute: 1e-6))
      }
    }
    #expect(yReLU.contains(0) && y.contains { $0 < 0 })  // the ReLU had something to clip
  }

  @Test func backwardMatchesFiniteDifferences() {
    let x = Reference.randomFloats(batch * inFeatures, seed: 4)
    let w = Reference.randomFloats(outFeatures * inFeatures, seed: 5)
    let b = Reference.randomFloats(outFeatures, seed: 6)
    let r = Reference.randomFloats(batch * outFeatures, seed: 7)
    // Non-zero starting gradients: backward must add to dW and db, and overwrite dx.
    let dW0 = Reference.randomFloats(outFeatures * inFeatures, seed: 8)
    let dB0 = Reference.randomFloats(outFeatures, seed: 9)
    var dW = dW0
    var dB = dB0
    var dx = [Float](repeating: .nan, count: batch * inFeatures)
    Linear.backward(
      x: x, weight: w, dy: r, dWeight: &dW, dBias: &dB, dx: &dx,
      batch: batch, inFeatures: inFeatures, outFeatures: outFeatures)

    let (xd, wd, bd, rd) = (
      x.map(Double.init), w.map(Double.init), b.map(Double.init), r.map(Double.init)
    )
    let gW = Reference.gradient(of: { objective(x: xd, w: $0, b: bd, r: rd) }, at: wd)
    let gB = Reference.gradient(of: { objective(x: xd, w: wd, b: $0, r: rd) }, at: bd)
    let gX = Reference.gradient(of: { objective(x: $0, w: wd, b: bd, r: rd) }, at: xd)
    for i in gW.indices { #expect(isClose(Double(dW[i] - dW0[i]), gW[i]), "dW[\(i)]") }
    for i in gB.indices { #expect(isClose(Double(dB[i] - dB0[i]), gB[i]), "db[\(i)]") }
    for i in gX.indices { #expect(isClose(Double(dx[i]), gX[i]), "dx[\(i)]") }

    // Without dx (the first layer) the parameter gradients are the same.
    var dW2 = dW0
    var dB2 = dB0
    Linear.backward(
      x: x, weight: w, dy: r, dWeight: &dW2, dBias: &dB2, dx: nil,
      batch: batch, inFeatures: inFeatures, outFeatures: outFeatures)
    #expect(dW2 == dW && dB2 == dB)
  }
}

@Suite struct ReLUTests {
  @Test func forwardAndBackwardMatchFiniteDifferences() {
    // Inputs kept away from the kink at 0, where the derivative is undefined.
    let z = Reference.randomFloats(40, seed: 11).map { $0 < 0 ? $0 - 0.1 : $0 + 0.1 }
    let r = Reference.randomFloats(40, seed: 12)
    var y = [Float](repeating: .nan, count: 40)
    ReLU.forward(x: z, y: &y, count: 40)
    #expect(y == z.map { max($0, 0) })
    var dz = [Float](repeating: .nan, count: 40)
    ReLU.backward(y: y, dy: r, dx: &dz, count: 40)
    let rd = r.map(Double.init)
    let g = Reference.gradient(
      of: { zs in zip(zs, rd).reduce(0) { $0 + max($1.0, 0) * $1.1 } }, at: z.map(Double.init),
      epsilon: 1e-3)
    for i in g.indices { #expect(isClose(Double(dz[i]), g[i], absolute: 1e-6), "dz[\(i)]") }
    // In place.
    var inPlace = r
    ReLU.backward(y: y, dy: inPlace, dx: &inPlace, count: 40)
    #expect(inPlace == dz)
  }

  @Test func addBiasForwardIsBiasThenReLU() {
    var y: [Float] = [1, -2, 3, -4, 0.5, 0.25]  // [2, 3]
    ReLU.addBiasForward(bias: [1, 1, -3.5], y: &y, batch: 2, features: 3)
    #expect(y == [2, 0, 0, 0, 1.5, 0])
  }
}
