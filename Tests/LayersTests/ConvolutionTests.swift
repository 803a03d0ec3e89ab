import Foundation
import Testing

@testable import Layers
@testable import Tensors

/// One Conv2d configuration: per-sample input [channels, height, width], out channels, kernel, stride, padding,
/// and the batch.
struct ConvCase: CustomTestStringConvertible, Sendable {
  var channels: Int
  var outChannels: Int
  var height: Int
  var width: Int
  var kernel: Int
  var stride: Int
  var padding: Int
  var batch: Int
  /// nil: the layer's default.
  var method: Conv2d.Method? = nil
  /// Winograd's tiles per chunk (small ones make several chunks of a small batch).
  var tilesPerChunk = WinogradConvolution.defaultTilesPerChunk

  var testDescription: String {
    "\(channels)x\(height)x\(width) → \(outChannels) k\(kernel) s\(stride) p\(padding), batch \(batch)"
      + (method.map { ", \($0)" } ?? "")
      + (tilesPerChunk == WinogradConvolution.defaultTilesPerChunk
        ? "" : ", \(tilesPerChunk) tiles per chunk")
  }

  func makeLayer() -> Conv2d {
    Conv2d(
      inputShape: [channels, height, width], outChannels: outChannels, kernel: kernel, stride: stride,
      padding: padding, method: method, winogradTilesPerChunk: tilesPerChunk)
  }

  var outHeight: Int { Reference.outputSide(height, kernel: kernel, stride: stride, padding: padding) }
  var outWidth: Int { Reference.outputSide(width, kernel: kernel, stride: stride, padding: padding) }
  var inputCount: Int { batch * channels * height * width }
  var weightCount: Int { outChannels * channels * kernel * kernel }

  /// The reference convolution of x with the flat parameters (weight, then bias).
  func reference(_ x: [Double], _ parameters: [Double]) -> [Double] {
    Reference.conv2d(
      x, batch: batch, channels: channels, height: height, width: width, weight: Array(parameters[..<weightCount]),
      bias: Array(parameters[weightCount...]), outChannels: outChannels, kernel: kernel, stride: stride,
      padding: padding)
  }
}

@Suite struct Conv2dTests {
  static let forwardCases =
    [
      ConvCase(channels: 1, outChannels: 1, height: 4, width: 4, kernel: 1, stride: 1, padding: 0, batch: 2),
      ConvCase(channels: 3, outChannels: 2, height: 5, width: 7, kernel: 1, stride: 2, padding: 0, batch: 3),
      ConvCase(channels: 2, outChannels: 3, height: 5, width: 7, kernel: 3, stride: 1, padding: 1, batch: 2),
      ConvCase(channels: 2, outChannels: 4, height: 5, width: 7, kernel: 3, stride: 2, padding: 1, batch: 3),
      ConvCase(channels: 3, outChannels: 2, height: 6, width: 9, kernel: 3, stride: 2, padding: 0, batch: 2),
      ConvCase(channels: 2, outChannels: 3, height: 7, width: 5, kernel: 5, stride: 1, padding: 2, batch: 2),
      ConvCase(channels: 1, outChannels: 2, height: 9, width: 8, kernel: 5, stride: 2, padding: 2, batch: 3),
      ConvCase(channels: 3, outChannels: 3, height: 5, width: 5, kernel: 5, stride: 1, padding: 0, batch: 2),
      ConvCase(channels: 2, outChannels: 2, height: 6, width: 5, kernel: 3, stride: 3, padding: 2, batch: 2),
      ConvCase(channels: 2, outChannels: 2, height: 3, width: 4, kernel: 5, stride: 1, padding: 2, batch: 1),
      ConvCase(channels: 4, outChannels: 5, height: 10, width: 12, kernel: 3, stride: 1, padding: 1, batch: 2),
    ] + winogradCases

  /// Winograd F(4×4, 3×3) at every padding, output sides of every remainder mod 4 (a last tile partly outside),
  /// one channel and many, a group of eight samples and a short one, one chunk and several (the last one short),
  /// against the same direct reference.
  static let winogradCases = [
    ConvCase(
      channels: 1, outChannels: 2, height: 4, width: 4, kernel: 3, stride: 1, padding: 0, batch: 1,
      method: .winograd),
    ConvCase(
      channels: 3, outChannels: 4, height: 7, width: 9, kernel: 3, stride: 1, padding: 1, batch: 3,
      method: .winograd),
    ConvCase(
      channels: 2, outChannels: 3, height: 6, width: 5, kernel: 3, stride: 1, padding: 2, batch: 2,
      method: .winograd),
    // Chunks of 8, 8 and 3 samples.
    ConvCase(
      channels: 5, outChannels: 3, height: 9, width: 6, kernel: 3, stride: 1, padding: 0, batch: 19,
      method: .winograd, tilesPerChunk: 20),
    ConvCase(
      channels: 8, outChannels: 6, height: 14, width: 14, kernel: 3, stride: 1, padding: 1, batch: 10,
      method: .winograd, tilesPerChunk: 100),
    ConvCase(
      channels: 2, outChannels: 2, height: 3, width: 3, kernel: 3, stride: 1, padding: 1, batch: 9,
      method: .winograd, tilesPerChunk: 1),
    // Wide images: rows of 5 tiles, and of 5 with the last one mostly outside.
    ConvCase(
      channels: 2, outChannels: 3, height: 5, width: 20, kernel: 3, stride: 1, padding: 1, batch: 3,
      method: .winograd, tilesPerChunk: 30),
    ConvCase(
      channels: 3, outChannels: 2, height: 4, width: 19, kernel: 3, stride: 1, padding: 0, batch: 12,
      method: .winograd),
    // 5×5 kernels by F(4×4, 5×5), whose 8×8 windows start above and left of the image (padding 2) or inside it
    // (padding 0); other sizes in 3×3 parts: 4×4 (four, mostly zero) and 2×2 (one, zero-filled).
    ConvCase(
      channels: 3, outChannels: 2, height: 7, width: 5, kernel: 5, stride: 1, padding: 2, batch: 2,
      method: .winograd),
    ConvCase(
      channels: 2, outChannels: 3, height: 9, width: 9, kernel: 5, stride: 1, padding: 0, batch: 9,
      method: .winograd, tilesPerChunk: 1),
    ConvCase(
      channels: 2, outChannels: 2, height: 6, width: 7, kernel: 5, stride: 1, padding: 1, batch: 3,
      method: .winograd),
    ConvCase(
      channels: 2, outChannels: 2, height: 6, width: 6, kernel: 4, stride: 1, padding: 1, batch: 2,
      method: .winograd),
    ConvCase(
      channels: 2, outChannels: 3, height: 5, width: 6, kernel: 2, stride: 1, padding: 0, batch: 2,
      method: .winograd),
  ]

  /// im2col against the direct sum element by element; Winograd relative to the output's largest magnitude, as
  /// its rounding error scales with the terms of a whole tile, not with each output (up to 1.5e-5 of an output
  /// near 1 whose neighbours reach 8, measured; Winograd.h).
  static func mismatch(_ actual: [Double], _ expected: [Double], _ c: ConvCase) -> String? {
    guard c.makeLayer().method == .winograd else { return firstMismatch(actual, expected, tolerance: 1e-5) }
    let scale = expected.map(abs).max() ?? 1
    return firstMismatch(actual.map { $0 / scale }, expected.map { $0 / scale }, tolerance: 1e-5)
  }

  @Test(arguments: forwardCases)
  func forwardMatchesDirectConvolution(_ c: ConvCase) {
    let harness = LayerHarness(c.makeLayer(), offset: 5, seed: 61)
    #expect(harness.layer.outputShape == [c.outChannels, c.outHeight, c.outWidth])
    let x = Reference.randomFloats(c.inputCount, seed: 60, in: -2...2)
    let y = harness.forward(x, batch: c.batch)
    let expected = c.reference(x.doubles, harness.parameterValues.doubles)
    #expect(Self.mismatch(y.doubles, expected, c) == nil)
    #expect(harness.guardsIntact)
  }

  @Test(arguments: [forwardCases[3], forwardCases[6], winogradCases[1], winogradCases[3]])
  func appliesReLUGivesRectifiedConvolution(_ c: ConvCase) {
    let conv = c.makeLayer()
    conv.appliesReLU = true
    let harness = LayerHarness(conv, seed: 62)
    let x = Reference.randomFloats(c.inputCount, seed: 63, in: -2...2)
    let y = harness.forward(x, batch: c.batch)
    let expected = c.reference(x.doubles, harness.parameterValues.doubles).map { max($0, 0) }
    #expect(Self.mismatch(y.doubles, expected, c) == nil)
    #expect(y.contains(0) && y.contains { $0 > 0 })
  }

  @Test func shapesAndExpression() {
    let conv = Conv2d(inputShape: [3, 28, 20], outChannels: 8, kernel: 5, stride: 2, padding: 2)
    #expect(conv.outputShape == [8, 14, 10])
    #expect(conv.parameterShapes.map(\.suffix) == ["weight", "bias"])
    #expect(conv.parameterShapes.map(\.shape) == [[8, 3, 5, 5], [8]])
    #expect(conv.torchExpression == "torch.nn.Conv2d(3, 8, kernel_size=5, stride=2, padding=2)")
    #expect(Conv2d.outputSide(input: 28, kernel: 3, stride: 1, padding: 1) == 28)
    #expect(Conv2d.outputSide(input: 7, kernel: 3, stride: 2, padding: 0) == 3)
    #expect(Conv2d.outputSide(input: 2, kernel: 5, stride: 1, padding: 1) == nil)
    #expect(Conv2d.outputSide(input: 3, kernel: 5, stride: 1, padding: 1) == 1)
  }

  /// At the CNN's second convolution's size (32 → 64 channels on 14×14, padding 1), over three chunks (8, 8 and 3 samples): Winograd's
  /// forward and backward against the im2col method's (each checked against the direct sum above), relative to the
  /// largest magnitude.
  ///
  /// And at the README's 5×5 example's second convolution (16 → 32 channels on 14×14, padding 2).
  @Test(arguments: [(32, 64, 3, 1), (16, 32, 5, 2)])
  func winogradMatchesColumnsAtTheCNNsSize(_ channels: Int, _ outChannels: Int, _ kernel: Int, _ padding: Int) {
    func run(_ method: Conv2d.Method) -> (y: [Float], gradients: [Float], dx: [Float]) {
      let c = ConvCase(
        channels: channels, outChannels: outChannels, height: 14, width: 14, kernel: kernel, stride: 1,
        padding: padding, batch: 19, method: method, tilesPerChunk: 100)
      let harness = LayerHarness(c.makeLayer(), seed: 120)
      let x = Reference.randomFloats(c.inputCount, seed: 121)
      let y = harness.forward(x, batch: c.batch)
      let dy = Reference.randomFloats(y.count, seed: 122)
      let (dx, _) = harness.backward(x: x, y: y, dy: dy, batch: c.batch)
      return (y, harness.gradientValues, dx!)
    }
    let (winograd, columns) = (run(.winograd), run(.columns))
    for (name, a, b) in [
      ("y", winograd.y, columns.y), ("dW and db", winograd.gradients, columns.gradients),
      ("dx", winograd.dx, columns.dx),
    ] {
      let scale = Double(b.map(abs).max()!)
      let worst = zip(a, b).map { Double(abs($0 - $1)) }.max()!
      #expect(worst <= 1e-5 * scale, "\(name): largest difference \(worst) against magnitude \(scale)")
    }
  }

  /// The default CNN: its first convolution (one channel) by columns, its second (32 channels) by Winograd; a
  /// stride, or a kernel other than 3 and 5, always by columns.
  @Test func methodChoice() throws {
    let spec = try ModelSpec(parsing: "cnn", sampleShape: [1, 28, 28], classCount: 10)
    let convolutions = Sequential(spec: spec, maxBatch: 2).layers.compactMap { $0 as? Conv2d }
    #expect(convolutions.map(\.method) == [.columns, .winograd])
    #expect(Conv2d.defaultMethod(inChannels: 8, kernel: 3, stride: 1) == .winograd)
    #expect(Conv2d.defaultMethod(inChannels: 7, kernel: 3, stride: 1) == .columns)
    #expect(Conv2d.defaultMethod(inChannels: 64, kernel: 3, stride: 2) == .columns)
    #expect(Conv2d.defaultMethod(inChannels: 64, kernel: 5, stride: 1) == .winograd)
    #expect(Conv2d.defaultMethod(inChannels: 7, kernel: 5, stride: 1) == .columns)
    #expect(Conv2d.defaultMethod(inChannels: 64, kernel: 7, stride: 1) == .columns)
  }

  /// L = Σ r ⊙ conv(x): the backward's dW, db (added to what was there) and dx (overwritten) against central
  /// differences of the Double reference.
  @Test(
    arguments: [
      ConvCase(channels: 2, outChannels: 3, height: 5, width: 7, kernel: 3, stride: 2, padding: 1, batch: 2),
      ConvCase(channels: 3, outChannels: 2, height: 6, width: 6, kernel: 5, stride: 1, padding: 2, batch: 2),
      ConvCase(channels: 1, outChannels: 2, height: 7, width: 5, kernel: 2, stride: 3, padding: 1, batch: 3),
      ConvCase(channels: 2, outChannels: 2, height: 4, width: 4, kernel: 1, stride: 1, padding: 0, batch: 2),
      ConvCase(channels: 2, outChannels: 3, height: 6, width: 5, kernel: 3, stride: 2, padding: 2, batch: 2),
    ] + winogradCases.filter { $0.inputCount <= 2000 })
  func backwardMatchesFiniteDifferences(_ c: ConvCase) {
    let harness = LayerHarness(c.makeLayer(), offset: 3, seed: 70)
    let x = Reference.randomFloats(c.inputCount, seed: 71)
    let y = harness.forward(x, batch: c.batch)
    let r = Reference.randomFloats(y.count, seed: 72)
    let start = Reference.randomFloats(harness.layer.parameterCount, seed: 73)
    harness.gradientValues = start
    let (dx, ranges) = harness.backward(x: x, y: y, dy: r, batch: c.batch)
    let added = zip(harness.gradientValues, start).map { Double($0 - $1) }

    let (xd, theta, rd) = (x.doubles, harness.parameterValues.doubles, r.doubles)
    let gTheta = Reference.gradient(of: { Reference.dot(rd, c.reference(xd, $0)) }, at: theta)
    let gX = Reference.gradient(of: { Reference.dot(rd, c.reference($0, theta)) }, at: xd)
    #expect(Self.mismatch(Array(added[..<c.weightCount]), Array(gTheta[..<c.weightCount]), c) == nil)
    #expect(Self.mismatch(Array(added[c.weightCount...]), Array(gTheta[c.weightCount...]), c) == nil)
    #expect(Self.mismatch(dx!.doubles, gX, c) == nil)
    #expect(ranges == [3..<(3 + harness.layer.parameterCount)])
    #expect(harness.guardsIntact)

    // Without dx (a first layer) the parameter gradients are the same bits.
    let withInput = harness.gradientValues
    harness.gradientValues = start
    let (none, _) = harness.backward(x: x, y: y, dy: r, batch: c.batch, wantsInputGradient: false)
    #expect(none == nil && harness.gradientValues == withInput)
  }
}

/// One MaxPool2d configuration: per-sample input [channels, height, width], window, stride, batch.
struct PoolCase: CustomTestStringConvertible, Sendable {
  var channels: Int
  var height: Int
  var width: Int
  var kernel: Int
  var stride: Int
  var batch: Int

  var testDescription: String { "\(channels)x\(height)x\(width) k\(kernel) s\(stride), batch \(batch)" }
  var inputCount: Int { batch * channels * height * width }

  func makeLayer() -> MaxPool2d {
    MaxPool2d(inputShape: [channels, height, width], kernel: kernel, stride: stride, maxBatch: batch)
  }

  func reference(_ x: [Double]) -> (y: [Double], argmax: [Int]) {
    Reference.maxPool2d(
      x, batch: batch, channels: channels, height: height, width: width, kernel: kernel, stride: stride)
  }

  /// dx of the reference: each output's dy added at its window's (first) maximum.
  func referenceInputGradient(_ x: [Double], dy: [Double]) -> [Double] {
    let argmax = reference(x).argmax
    let perSample = channels * height * width
    let outputsPerSample = argmax.count / batch
    var dx = [Double](repeating: 0, count: x.count)
    for (i, index) in argmax.enumerated() { dx[(i / outputsPerSample) * perSample + index] += dy[i] }
    return dx
  }
}

@Suite struct MaxPool2dTests {
  static let cases = [
    PoolCase(channels: 2, height: 5, width: 7, kernel: 2, stride: 2, batch: 2),
    PoolCase(channels: 3, height: 4, width: 6, kernel: 2, stride: 2, batch: 2),
    PoolCase(channels: 2, height: 7, width: 6, kernel: 3, stride: 2, batch: 3),
    PoolCase(channels: 2, height: 5, width: 5, kernel: 3, stride: 1, batch: 2),
    PoolCase(channels: 1, height: 6, width: 8, kernel: 2, stride: 1, batch: 2),
    PoolCase(channels: 2, height: 9, width: 7, kernel: 3, stride: 3, batch: 2),
    PoolCase(channels: 3, height: 8, width: 8, kernel: 3, stride: 2, batch: 3),
    PoolCase(channels: 1, height: 5, width: 4, kernel: 4, stride: 1, batch: 1),
    // 2×2 windows tiling the image with rows of more than eight windows (the vectors of both directions).
    PoolCase(channels: 2, height: 6, width: 20, kernel: 2, stride: 2, batch: 2),
    PoolCase(channels: 3, height: 4, width: 34, kernel: 2, stride: 2, batch: 2),
  ]

  /// With a ReLU before it, the pooling's backward applies the ReLU's mask itself (`Sequential` then skips the
  /// ReLU's backward): the same bits as the plain backward followed by the mask where the ReLU's output is 0.
  @Test(arguments: [cases[0], cases[1], cases[2], cases[8], cases[9]])
  func rectifiedBackwardIsTheReLUMaskOfThePlainOne(_ c: PoolCase) {
    let x = Reference.randomFloats(c.inputCount, seed: 82, in: -4...1).map { max($0, 0) }  // a ReLU's output
    let plain = LayerHarness(c.makeLayer())
    let y = plain.forward(x, batch: c.batch)
    let dy = Reference.randomFloats(y.count, seed: 83, in: -1...1)
    let masked = zip(plain.backward(x: x, y: y, dy: dy, batch: c.batch).dx!, x).map { $1 > 0 ? $0 : 0 }
    let pool = c.makeLayer()
    pool.rectifiesInputGradient = true
    let rectified = LayerHarness(pool)
    #expect(rectified.forward(x, batch: c.batch) == y)
    let dx = rectified.backward(x: x, y: y, dy: dy, batch: c.batch).dx!
    #expect(dx.map(\.bitPattern) == masked.map(\.bitPattern))
    #expect(y.contains(0) && y.contains { $0 > 0 })
  }

  /// Inputs with many ties (values from {−1, 0, 1, 2}): the output is the window maximum, and the gradient goes
  /// to the window's first maximum in row-major order. dy holds small integers, so the sums are exact.
  @Test(arguments: cases)
  func forwardAndTieRuleMatchNaivePooling(_ c: PoolCase) {
    let harness = LayerHarness(c.makeLayer())
    let x = Reference.randomFloats(c.inputCount, seed: 80, in: 0...3.999).map { Float(Int($0)) - 1 }
    let (expected, _) = c.reference(x.doubles)
    #expect(
      harness.layer.outputShape == [
        c.channels, (c.height - c.kernel) / c.stride + 1,
        (c.width - c.kernel) / c.stride + 1,
      ])
    let y = harness.forward(x, batch: c.batch)
    #expect(y.doubles == expected)
    let dy = Reference.randomFloats(y.count, seed: 81, in: 1...8.999).map { Float(Int($0)) }
    let dx = harness.backward(x: x, y: y, dy: dy, batch: c.batch).dx!
    #expect(dx.doubles == c.referenceInputGradient(x.doubles, dy: dy.doubles))
  }

  @Test func gradientGoesToTheFirstMaximumInRowMajorOrder() {
    // 1x4x4, 2×2 windows (the unrolled path): [all equal], [3 at (0,1) and (1,0)], [2 at (1,0), (1,1)], [unique].
    let x: [Float] = [
      5, 5, 1, 3,
      5, 5, 3, 2,
      0, 1, 7, 7,
      2, 2, 7, 8,
    ]
    let harness = LayerHarness(MaxPool2d(inputShape: [1, 4, 4], kernel: 2, stride: 2, maxBatch: 1))
    let y = harness.forward(x, batch: 1)
    #expect(y == [5, 3, 2, 8])
    let dx = harness.backward(x: x, y: y, dy: [1, 2, 4, 8], batch: 1).dx!
    #expect(dx == [1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 8])

    // 1x3x4, 3×3 windows, stride 1 (the general loop, overlapping): both windows hold 9 at (0,2) and (2,1).
    let z: [Float] = [
      1, 0, 9, 4,
      3, 2, 0, 9,
      0, 9, 1, 1,
    ]
    let general = LayerHarness(MaxPool2d(inputShape: [1, 3, 4], kernel: 3, stride: 1, maxBatch: 1))
    let w = general.forward(z, batch: 1)
    #expect(w == [9, 9])
    let dz = general.backward(x: z, y: w, dy: [1, 2], batch: 1).dx!
    #expect(dz == [0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0])
  }

  @Test func notANumberWinsItsWindowAsInPyTorch() {
    let x: [Float] = [1, .nan, 2, 3, 5, 2, 0, 4]  // 1x2x4: windows [1, NaN; 5, 2] and [2, 3; 0, 4]
    let harness = LayerHarness(MaxPool2d(inputShape: [1, 2, 4], kernel: 2, stride: 2, maxBatch: 1))
    let y = harness.forward(x, batch: 1)
    #expect(y[0].isNaN && y[1] == 4)
    let dx = harness.backward(x: x, y: y, dy: [1, 2], batch: 1).dx!
    #expect(dx == [0, 1, 0, 0, 0, 0, 0, 2])
  }

  /// L = Σ r ⊙ pool(x) on inputs without ties (distinct values at least 0.01 apart): dx against central
  /// differences of the Double reference.
  @Test(arguments: cases)
  func inputGradientMatchesFiniteDifferences(_ c: PoolCase) {
    var generator = Xoshiro256(seed: 90, stream: 7)
    var order = Array(0..<c.inputCount)
    for i in order.indices.reversed() where i > 0 {
      order.swapAt(i, Int(generator.next() % UInt64(i + 1)))
    }
    let x = order.map { Float($0) * 0.01 - 1 }
    let harness = LayerHarness(c.makeLayer())
    let y = harness.forward(x, batch: c.batch)
    let r = Reference.randomFloats(y.count, seed: 91)
    let dx = harness.backward(x: x, y: y, dy: r, batch: c.batch).dx!
    let rd = r.doubles
    let expected = Reference.gradient(of: { Reference.dot(rd, c.reference($0).y) }, at: x.doubles)
    #expect(firstMismatch(dx.doubles, expected, tolerance: 1e-5) == nil)
    #expect(expected.contains(0) && expected.contains { $0 != 0 })
  }

  @Test func shapesAndExpression() {
    let pool = MaxPool2d(inputShape: [4, 7, 9], kernel: 3, stride: 2, maxBatch: 1)
    #expect(pool.outputShape == [4, 3, 4])
    #expect(pool.parameterShapes.isEmpty && pool.parameterCount == 0)
    #expect(pool.torchExpression == "torch.nn.MaxPool2d(kernel_size=3, stride=2)")
  }
}

@Suite struct FlattenTests {
  @Test func isAViewWithNoParameters() {
    let flatten = Flatten(inputShape: [3, 4, 5])
    #expect(flatten.outputShape == [60])
    #expect(flatten.storage == .view)
    #expect(flatten.parameterShapes.isEmpty)
    #expect(flatten.torchExpression == "torch.nn.Flatten()")
  }

  /// The gradient passes through Flatten in [c, h, w] order: a conv before it gets the gradient that central
  /// differences of the reference (which flattens NCHW) give, and so does the Linear after it.
  @Test func gradientPassesThroughInChannelMajorOrder() throws {
    let spec = try ModelSpec(parsing: "seq:conv2k2,relu,flatten,linear3", sampleShape: [1, 4, 5], classCount: 3)
    let model = Sequential(spec: spec, maxBatch: 2)
    #expect(model.views.map(\.name) == ["0.weight", "0.bias", "3.weight", "3.bias"])
    #expect(model.views.map(\.shape) == [[2, 1, 2, 2], [2], [3, 24], [3]])
    model.parameters.copy(from: Reference.randomFloats(model.parameterCount, seed: 100))
    let input = Reference.randomFloats(2 * 20, seed: 101)
    let labels: [Int32] = [2, 0]
    model.zeroGradients()
    _ = model.accumulateGradients(input: input, labels: labels, batch: 2, gradientScale: 1)
    let expected = Reference.gradient(
      of: {
        Reference.loss(
          layers: spec.layers, inputShape: [1, 4, 5], parameters: $0, input: input.doubles, labels: [2, 0],
          classes: 3)
      }, at: model.parameters.array.doubles)
    #expect(firstMismatch(model.gradients.array.doubles, expected, tolerance: 1e-5) == nil)
    #expect(expected[0..<10].contains { abs($0) > 1e-2 })  // the conv's gradient is not trivially zero
  }
}

@Suite struct SmallCNNGradientTests {
  let spec: ModelSpec
  let batch = 5
  let labels: [Int32] = [0, 3, 1, 2, 3]
  let input = Reference.randomFloats(5 * 2 * 9 * 9, seed: 110)

  init() throws {
    spec = try ModelSpec(
      parsing: "seq:conv3k3s2p1,relu,pool2,flatten,linear4", sampleShape: [2, 9, 9], classCount: 4)
  }

  func makeModel() -> Sequential {
    let model = Sequential(spec: spec, maxBatch: 7)
    model.parameters.copy(from: Reference.randomFloats(model.parameterCount, seed: 111, in: -0.5...0.5))
    return model
  }

  func referenceLoss(_ parameters: [Double]) -> Double {
    Reference.loss(
      layers: spec.layers, inputShape: [2, 9, 9], parameters: parameters, input: input.doubles,
      labels: labels.map(Int.init), classes: 4)
  }

  @Test func shapes() {
    #expect(spec.outputShapes == [[3, 5, 5], [3, 5, 5], [3, 2, 2], [12], [4]])
    #expect(spec.parameterCount == 3 * 2 * 9 + 3 + 4 * 12 + 4)
  }

  /// Every parameter's gradient, against central differences of the Double reference (tight) and of the model's
  /// own loss through `evaluate` (Float, coarser step; parameters whose step crosses a ReLU kink or changes a
  /// pooling window's maximum are left to the first check).
  @Test func everyParameterMatchesFiniteDifferences() {
    let model = makeModel()
    let scale: Float = 0.25
    model.zeroGradients()
    let result = model.accumulateGradients(input: input, labels: labels, batch: batch, gradientScale: scale)
    let theta = model.parameters.array.doubles
    #expect(isClose(result.lossSum, referenceLoss(theta), absolute: 1e-5, relative: 1e-5))
    #expect(model.evaluate(input: input, labels: labels, batch: batch) == result)

    let expected = Reference.gradient(of: referenceLoss, at: theta).map { $0 * Double(scale) }
    let gradients = model.gradients.array.doubles
    for i in theta.indices {
      #expect(isClose(gradients[i], expected[i], absolute: 2e-6, relative: 1e-4), "∂θ[\(i)]")
    }
    #expect(expected.filter { abs($0) > 1e-3 }.count > theta.count / 2)

    // Central differences of the model's own forward, in Float.
    let step: Float = 1e-3
    let coarse = Reference.gradient(of: referenceLoss, at: theta, epsilon: Double(step))
    var checked = 0
    for i in theta.indices where abs(coarse[i] * Double(scale) - expected[i]) < 1e-5 {
      let original = model.parameters[i]
      model.parameters[i] = original + step
      let plus = model.evaluate(input: input, labels: labels, batch: batch).lossSum
      let up = Double(model.parameters[i])
      model.parameters[i] = original - step
      let minus = model.evaluate(input: input, labels: labels, batch: batch).lossSum
      let down = Double(model.parameters[i])
      model.parameters[i] = original
      let difference = (plus - minus) / (up - down) * Double(scale)
      #expect(isClose(gradients[i], difference, absolute: 2e-4, relative: 1e-2), "∂θ[\(i)] vs evaluate")
      checked += 1
    }
    #expect(checked >= theta.count * 9 / 10)
  }

  @Test func gradientsAccumulateOverCalls() {
    let model = makeModel()
    model.zeroGradients()
    let first = model.accumulateGradients(input: input, labels: labels, batch: batch, gradientScale: 0.5)
    let once = model.gradients.array
    let second = model.accumulateGradients(input: input, labels: labels, batch: batch, gradientScale: 0.5)
    #expect(second == first)
    let twice = model.gradients.array
    let largest = once.map(abs).max()!
    #expect(largest > 1e-2)
    for i in once.indices {
      #expect(abs(twice[i] - 2 * once[i]) <= 1e-6 * max(largest, 1), "θ[\(i)]")
    }
    // Two halves of the batch add up to the whole.
    model.zeroGradients()
    _ = model.accumulateGradients(input: input, labels: labels, batch: 2, gradientScale: 1)
    let rest = Array(input[(2 * 162)...])
    _ = model.accumulateGradients(input: rest, labels: Array(labels[2...]), batch: 3, gradientScale: 1)
    let halves = model.gradients.array
    for i in once.indices {
      #expect(abs(halves[i] - 2 * once[i]) <= 1e-5 * max(largest, 1), "θ[\(i)] in two parts")
    }
  }

  /// The first layer's input needs no gradient: the caller's input is only read, and the first Conv2d without
  /// dx gives the same parameter gradients as with it (Conv2dTests), so nothing is lost by skipping it.
  @Test func firstLayerInputIsOnlyRead() {
    let model = makeModel()
    let buffer = FloatBuffer(input)  // its own memory, compared with the array afterwards
    model.zeroGradients()
    _ = model.accumulateGradients(input: buffer.pointer, labels: labels, batch: batch, gradientScale: 1)
    #expect(buffer.array == input)
    #expect(model.gradients.array.allSatisfy { $0.isFinite })
  }
}
