import Checkpoints
import Foundation
import Testing

@testable import Layers
@testable import Tensors

/// Label smoothing against Fixtures/label_smoothing_fixture.safetensors, written by
/// Fixtures/make_label_smoothing_fixture.py (PyTorch's F.cross_entropy with label_smoothing, in float64).
@Suite struct LabelSmoothingFixtureTests {
  let fixture: [String: [Float]]

  init() throws {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("Fixtures/label_smoothing_fixture.safetensors")
    let tensors = try SafeTensors.decode([UInt8](try Data(contentsOf: url)), path: url.path).tensors
    fixture = Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0.values) })
  }

  @Test(arguments: [(Float(0), "0"), (0.1, "100"), (0.35, "350")])
  func lossAndGradientMatchTorch(smoothing: Float, name: String) throws {
    let logits = try #require(fixture["logits"])
    let labels = try #require(fixture["labels"]).map { Int32($0) }
    var gradient = [Float](repeating: .nan, count: logits.count)
    let result = SoftmaxCrossEntropy.forwardBackward(
      logits: logits, labels: labels, batch: 8, classes: 10, gradientScale: 1, smoothing: smoothing,
      dLogits: &gradient)
    let loss = Double(try #require(fixture["loss_\(name)"])[0])
    #expect(abs(result.lossSum - loss) <= 1e-6 * abs(loss), "loss \(result.lossSum) against \(loss)")
    let expected = try #require(fixture["grad_\(name)"])
    for i in expected.indices {
      #expect(abs(gradient[i] - expected[i]) <= 1e-6, "dLogits[\(i)] = \(gradient[i]), expected \(expected[i])")
    }
  }
}

@Suite struct DropoutTests {
  /// A [4, 250] batch of ones through dropout p, at positions first + stride·b of `step`.
  static func mask(
    p: Double, ordinal: Int = 0, step: Int = 0, first: Int = 0, stride: Int = 1, batch: Int = 4, training: Bool = true
  ) -> [Float] {
    let dropout = Dropout(inputShape: [250], probability: p)
    dropout.ordinal = ordinal
    dropout.training = training
    dropout.positions = SamplePositions(seed: 7, step: step, first: first, stride: stride)
    let x = [Float](repeating: 1, count: batch * 250)
    var y = [Float](repeating: .nan, count: batch * 250)
    dropout.forward(x, into: &y, batch: batch)
    return y
  }

  @Test(arguments: [0.1, 0.3, 0.5, 0.9])
  func dropsTheRightShareAndScalesTheRest(p: Double) {
    var dropped = 0
    var total = 0
    for step in 0..<64 {
      let y = Self.mask(p: p, step: step)
      let scale = 1 / Float(1 - p)
      #expect(y.allSatisfy { $0 == 0 || $0 == scale })
      dropped += y.filter { $0 == 0 }.count
      total += y.count
    }
    // 64,000 draws: the binomial standard deviation of the share is at most 0.002.
    #expect(abs(Double(dropped) / Double(total) - p) < 0.01, "\(dropped) of \(total)")
  }

  @Test func theMaskFollowsTheSamplesPositionStepAndLayer() {
    let batch = Self.mask(p: 0.5, step: 3, first: 2, stride: 3)
    // The same samples one at a time, each at its own position: the same masks.
    for b in 0..<4 {
      let single = Self.mask(p: 0.5, step: 3, first: 2 + 3 * b, stride: 3, batch: 1)
      #expect(Array(batch[(b * 250)..<((b + 1) * 250)]) == single, "sample \(b)")
    }
    #expect(Self.mask(p: 0.5, step: 4, first: 2, stride: 3) != batch)
    #expect(Self.mask(p: 0.5, ordinal: 1, step: 3, first: 2, stride: 3) != batch)
    #expect(Self.mask(p: 0.5, step: 3, first: 2, stride: 1) != batch)
  }

  @Test func evaluationAndZeroProbabilityAreTheIdentity() {
    #expect(Self.mask(p: 0.5, training: false).allSatisfy { $0 == 1 })
    #expect(Self.mask(p: 0).allSatisfy { $0 == 1 })
  }

  /// y = x·m/(1 − p) is linear in x with the drawn mask, so ∂(Σ w·y)/∂x = w·m/(1 − p): the backward's dx must be
  /// the forward's output for ones times dy, element by element, in place or not.
  @Test func backwardAppliesTheForwardsMask() {
    let dropout = Dropout(inputShape: [3, 5, 5], probability: 0.4)
    dropout.positions = SamplePositions(seed: 1, step: 9, first: 5, stride: 2)
    let count = 6 * 75
    let ones = [Float](repeating: 1, count: count)
    var factor = [Float](repeating: 0, count: count)
    dropout.forward(ones, into: &factor, batch: 6)
    let dy = Reference.randomFloats(count, seed: 3, in: -1...1)
    var dx = [Float](repeating: .nan, count: count)
    var dyCopy = dy
    dropout.backward(x: ones, y: factor, dy: &dyCopy, dx: &dx, batch: 6, rangeElements: .max) { _ in }
    #expect(dx == zip(dy, factor).map { $0 * $1 })
    dyCopy.withUnsafeMutableBufferPointer { inPlace in
      dropout.backward(
        x: ones, y: factor, dy: inPlace.baseAddress!, dx: inPlace.baseAddress!, batch: 6, rangeElements: .max
      ) { _ in }
    }
    #expect(dyCopy == dx)
  }

  @Test func tokensParseAndPrint() throws {
    let spec = try ModelSpec(parsing: "seq:linear16,relu,dropout0.25,linear10", sampleShape: [784], classCount: 10)
    let model = Sequential(spec: spec, maxBatch: 4)
    #expect(model.layers[2].torchExpression == "torch.nn.Dropout(p=0.25)")
    #expect(LayerSpec(token: "dropout0.25") == .dropout(probability: 0.25))
    #expect(LayerSpec(token: "dropout0.25")?.token == "dropout0.25")
    #expect(LayerSpec(token: "dropout") == nil)
    #expect(LayerSpec(token: "dropout-0.5") == nil)
    #expect(throws: (any Error).self) {
      try ModelSpec(parsing: "seq:linear16,dropout1.5,linear10", sampleShape: [784], classCount: 10)
    }
  }
}
