import Testing

@testable import Layers
@testable import Tensors

@Suite struct LinearTests {
  let batch = 3
  let inFeatures = 7
  let outFeatures = 5

  /// y = x·Wᵀ + b from the definition, in Double: x [batch, in], W [out, in], b [out].
  func affine(x: [Double], parameters: [Double], batch: Int, inFeatures: Int, outFeatures: Int) -> [Double] {
    var y = [Double](repeating: 0, count: batch * outFeatures)
    for i in 0..<batch {
      for o in 0..<outFeatures {
        var sum = parameters[outFeatures * inFeatures + o]
        for j in 0..<inFeatures { sum += x[i * inFeatures + j] * parameters[o * inFeatures + j] }
        y[i * outFeatures + o] = sum
      }
    }
    return y
  }

  @Test func shapesAndExpressionFlattenAnyInput() {
    let linear = Linear(inputShape: [2, 3, 4], outFeatures: 6)
    #expect(linear.inFeatures == 24 && linear.outputShape == [6])
    #expect(linear.parameterShapes.map(\.suffix) == ["weight", "bias"])
    #expect(linear.parameterShapes.map(\.shape) == [[6, 24], [6]])
    #expect(linear.parameterCount == 6 * 24 + 6)
    // On an image, PyTorch's Linear would act on the last dimension: FlatLinear (ddp_train.modules) flattens first.
    #expect(linear.torchExpression == "FlatLinear(24, 6)")
    #expect(Linear(inputShape: [24], outFeatures: 6).torchExpression == "torch.nn.Linear(24, 6)")
    #expect(linear.storage == .own)
  }

  @Test func forwardMatchesNaiveReference() {
    let harness = LayerHarness(Linear(inputShape: [inFeatures], outFeatures: outFeatures), offset: 11, seed: 2)
    let x = Reference.randomFloats(batch * inFeatures, seed: 1, in: -2...2)
    let y = harness.forward(x, batch: batch)
    let expected = affine(
      x: x.doubles, parameters: harness.parameterValues.doubles, batch: batch, inFeatures: inFeatures,
      outFeatures: outFeatures)
    #expect(firstMismatch(y.doubles, expected, tolerance: 1e-5) == nil)
    #expect(y.contains { $0 < 0 })  // so that the ReLU test below has something to clip
    #expect(harness.guardsIntact)
  }

  @Test func appliesReLUGivesRectifiedAffine() {
    let linear = Linear(inputShape: [inFeatures], outFeatures: outFeatures)
    linear.appliesReLU = true
    let harness = LayerHarness(linear, seed: 2)
    let x = Reference.randomFloats(batch * inFeatures, seed: 1, in: -2...2)
    let y = harness.forward(x, batch: batch)
    let expected = affine(
      x: x.doubles, parameters: harness.parameterValues.doubles, batch: batch, inFeatures: inFeatures,
      outFeatures: outFeatures
    ).map { max($0, 0) }
    #expect(firstMismatch(y.doubles, expected, tolerance: 1e-5) == nil)
    #expect(y.contains(0) && y.contains { $0 > 0 })
  }

  @Test func backwardMatchesFiniteDifferences() {
    let harness = LayerHarness(Linear(inputShape: [inFeatures], outFeatures: outFeatures), offset: 4, seed: 5)
    let x = Reference.randomFloats(batch * inFeatures, seed: 4)
    let r = Reference.randomFloats(batch * outFeatures, seed: 7)
    // Non-zero starting gradients: backward must add to dW and db, and overwrite dx.
    let start = Reference.randomFloats(harness.layer.parameterCount, seed: 8)
    harness.gradientValues = start
    let y = harness.forward(x, batch: batch)
    let (dx, ranges) = harness.backward(x: x, y: y, dy: r, batch: batch)
    let added = zip(harness.gradientValues, start).map { Double($0 - $1) }

    let (xd, theta, rd) = (x.doubles, harness.parameterValues.doubles, r.doubles)
    let objective = { (x: [Double], p: [Double]) in
      Reference.dot(rd, affine(x: x, parameters: p, batch: batch, inFeatures: inFeatures, outFeatures: outFeatures))
    }
    let gTheta = Reference.gradient(of: { objective(xd, $0) }, at: theta)
    let gX = Reference.gradient(of: { objective($0, theta) }, at: xd)
    #expect(firstMismatch(added, gTheta, tolerance: 1e-5) == nil, "dW and db")
    #expect(firstMismatch(dx!.doubles, gX, tolerance: 1e-5) == nil, "dx")
    #expect(ranges == [4..<(4 + harness.layer.parameterCount)])
    #expect(harness.guardsIntact)

    // Without dx (a first layer) the parameter gradients are the same bits.
    let withInput = harness.gradientValues
    harness.gradientValues = start
    let (none, _) = harness.backward(x: x, y: y, dy: r, batch: batch, wantsInputGradient: false)
    #expect(none == nil && harness.gradientValues == withInput)
  }

  /// The gradients of one backward with `rangeElements`, from the same starting gradients, with the ranges reported.
  func rowBlockRun(
    outFeatures: Int, inFeatures: Int, batch: Int, offset: Int, rangeElements: Int
  ) -> (gradients: [Float], dx: [Float], ranges: [Range<Int>]) {
    let x = Reference.randomFloats(batch * inFeatures, seed: 40)
    let dy = Reference.randomFloats(batch * outFeatures, seed: 41)
    let harness = LayerHarness(Linear(inputShape: [inFeatures], outFeatures: outFeatures), offset: offset, seed: 43)
    harness.gradientValues = Reference.randomFloats(harness.layer.parameterCount, seed: 42)
    let y = harness.forward(x, batch: batch)
    let (dx, ranges) = harness.backward(x: x, y: y, dy: dy, batch: batch, rangeElements: rangeElements)
    #expect(harness.guardsIntact)
    return (harness.gradientValues, dx!, ranges)
  }

  /// A weight of more than rangeElements gradients goes in whole-row blocks, last rows first, the bias before them:
  /// adjacent, descending ranges covering the layer's parameters once; the values those of one pass.
  @Test(arguments: [
    (5, 4, 3, 1), (5, 4, 3, 3), (5, 4, 3, 4), (5, 4, 3, 7), (5, 4, 3, 8), (5, 4, 3, 19), (5, 4, 3, 20),
    (40, 300, 16, 299), (40, 300, 16, 300), (40, 300, 16, 1000), (40, 300, 16, 4096), (40, 300, 16, 11_999),
    (40, 300, 16, 12_000), (7, 130, 33, 500),
  ])
  func rowBlockRangesCoverTheLayerOnce(outFeatures: Int, inFeatures: Int, batch: Int, rangeElements: Int) {
    let offset = 9
    let weightCount = outFeatures * inFeatures
    let parameterCount = weightCount + outFeatures
    let whole = rowBlockRun(
      outFeatures: outFeatures, inFeatures: inFeatures, batch: batch, offset: offset, rangeElements: .max)
    let blocks = rowBlockRun(
      outFeatures: outFeatures, inFeatures: inFeatures, batch: batch, offset: offset, rangeElements: rangeElements)
    #expect(whole.ranges == [offset..<(offset + parameterCount)])
    #expect(rangeProblem(blocks.ranges, cover: offset..<(offset + parameterCount)) == nil)
    if weightCount <= rangeElements {
      #expect(blocks.ranges == [offset..<(offset + parameterCount)])
    } else {
      #expect(blocks.ranges.first == (offset + weightCount)..<(offset + parameterCount))  // the bias first
      let weightRanges = blocks.ranges.dropFirst()
      #expect(weightRanges.count >= 2)
      #expect(weightRanges.allSatisfy { ($0.lowerBound - offset) % inFeatures == 0 && $0.count % inFeatures == 0 })
    }
    #expect(firstMismatch(blocks.gradients.doubles, whole.gradients.doubles, tolerance: 1e-6) == nil)
    #expect(bitDifferences(blocks.dx, whole.dx) == nil)
  }

  /// Each element is the same dot product over the batch whatever the blocks, but OpenBLAS may take another
  /// kernel path for fewer rows and sum the batch in another order: the blocks agree with the one-pass GEMM to
  /// rounding (measured: up to 5e-7 absolute on O(1) gradients at batch ≥ 8; bit for bit at batch ≤ 4). The last
  /// cases are the default MLP's first layer at the default rangeElements (four blocks of 64 rows) and small
  /// ones with a batch of 8.
  @Test(arguments: [
    (5, 4, 3, 1), (5, 4, 3, 7), (16, 16, 4, 128), (8, 64, 8, 256),
    (40, 300, 16, 4096), (7, 130, 33, 500), (8, 64, 8, 128), (16, 16, 8, 128), (256, 784, 16, 1 << 16),
  ])
  func rowBlocksGiveTheSameGradientsToRounding(outFeatures: Int, inFeatures: Int, batch: Int, rangeElements: Int) {
    let whole = rowBlockRun(
      outFeatures: outFeatures, inFeatures: inFeatures, batch: batch, offset: 0, rangeElements: .max)
    let blocks = rowBlockRun(
      outFeatures: outFeatures, inFeatures: inFeatures, batch: batch, offset: 0, rangeElements: rangeElements)
    #expect(firstMismatch(blocks.gradients.doubles, whole.gradients.doubles, tolerance: 1e-5) == nil)
    if batch <= 4 { #expect(bitDifferences(blocks.gradients, whole.gradients) == nil) }
  }
}

@Suite struct ReLUTests {
  @Test func forwardAndBackwardMatchFiniteDifferences() {
    // Inputs kept away from the kink at 0, where the derivative is undefined.
    let z = Reference.randomFloats(40, seed: 11).map { $0 < 0 ? $0 - 0.1 : $0 + 0.1 }
    let r = Reference.randomFloats(40, seed: 12)
    let harness = LayerHarness(ReLU(inputShape: [2, 4, 5]))
    #expect(harness.layer.storage == .inPlace && harness.layer.outputShape == [2, 4, 5])
    let y = harness.forward(z, batch: 1)
    #expect(y == z.map { max($0, 0) })
    let dz = harness.backward(x: z, y: y, dy: r, batch: 1).dx!
    let rd = r.doubles
    let g = Reference.gradient(
      of: { zs in zip(zs, rd).reduce(0) { $0 + max($1.0, 0) * $1.1 } }, at: z.doubles, epsilon: 1e-3)
    #expect(firstMismatch(dz.doubles, g, tolerance: 1e-6) == nil)
  }

  @Test func addBiasForwardIsBiasThenReLU() {
    var y: [Float] = [1, -2, 3, -4, 0.5, 0.25]  // [2, 3]
    ReLU.addBiasForward(bias: [1, 1, -3.5], y: &y, batch: 2, features: 3)
    #expect(y == [2, 0, 0, 0, 1.5, 0])
  }
}

/// Sequential.accumulateGradients documents: "A Linear weight gradient of more than `rangeElements` elements is
/// computed and reported in row blocks of at most that size (one row where a row is larger)". Here a row fits.
@Suite struct LinearRowBlockSizeTests {
  @Test(arguments: [(5, 4, 7), (128, 3136, 10_000), (256, 784, 1 << 16), (10, 10, 35)])
  func blocksAreAtMostRangeElements(outFeatures: Int, inFeatures: Int, rangeElements: Int) {
    let linear = Linear(inputShape: [inFeatures], outFeatures: outFeatures)
    let harness = LayerHarness(linear)
    let x = [Float](repeating: 0.5, count: inFeatures)
    let y = harness.forward(x, batch: 1)
    let ranges = harness.backward(x: x, y: y, dy: y, batch: 1, rangeElements: rangeElements).ranges
    let weightRanges = ranges.filter { $0.upperBound <= outFeatures * inFeatures }
    #expect(weightRanges.count > 1)
    #expect(weightRanges.allSatisfy { $0.count <= rangeElements }, "\(weightRanges.map(\.count))")
  }
}

/// nil when the arrays hold the same bits, else how many elements differ, the first, and the largest difference.
func bitDifferences(_ a: [Float], _ b: [Float]) -> String? {
  guard a.count == b.count else { return "\(a.count) values, expected \(b.count)" }
  let differing = a.indices.filter { a[$0].bitPattern != b[$0].bitPattern }
  guard let first = differing.first else { return nil }
  let largest = differing.map { abs(Double(a[$0]) - Double(b[$0])) }.max()!
  return "\(differing.count) of \(a.count) differ; first [\(first)]: \(a[first]) vs \(b[first]); largest |Δ| \(largest)"
}
