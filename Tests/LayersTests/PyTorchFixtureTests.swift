import Checkpoints
import Foundation
import Testing

@testable import Layers
@testable import Tensors

/// Fixtures/cnn_fixture.safetensors, written by Fixtures/make_cnn_fixture.py (PyTorch, float64 from float32
/// values): a small CNN's parameters, input, labels, logits, mean loss, every gradient and some activations.
enum CNNFixture {
  static let spec = "seq:conv4k3p1,relu,pool3s2,conv6k3s2p1,relu,flatten,linear5"
  static let parameterNames = ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias"]
  static let batch = 3

  static func load() throws -> [String: NamedTensor] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("Fixtures/cnn_fixture.safetensors")
    let bytes = [UInt8](try Data(contentsOf: url))
    let tensors = try SafeTensors.decode(bytes, path: url.path).tensors
    return Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0) })
  }
}

/// |a − b| ≤ tolerance · max(1, |b|) elementwise; nil when all are, else the first that is not.
func fixtureMismatch(_ actual: [Float], _ expected: [Float], tolerance: Double = 1e-5) -> String? {
  firstMismatch(actual.doubles, expected.doubles, tolerance: tolerance)
}

/// |a − b| ≤ tolerance · max |b| over the tensor; nil when all are, else the first that is not.
func scaledMismatch(_ actual: [Float], _ expected: [Float], tolerance: Double = 1e-5) -> String? {
  guard actual.count == expected.count else { return "\(actual.count) values, expected \(expected.count)" }
  let scale = Double(expected.map(abs).max() ?? 0)
  for i in actual.indices where !(abs(Double(actual[i]) - Double(expected[i])) <= tolerance * scale) {
    return "[\(i)]: \(actual[i]), expected \(expected[i]) (max |expected| \(scale))"
  }
  return nil
}

@Suite struct PyTorchFixtureTests {
  let fixture: [String: NamedTensor]
  let model: Sequential
  let labels: [Int32]

  init() throws {
    fixture = try CNNFixture.load()
    model = Sequential(
      spec: try ModelSpec(parsing: CNNFixture.spec, sampleShape: [2, 8, 8], classCount: 5), maxBatch: 3)
    for view in model.views {
      let values = try #require(fixture[view.name], "the fixture has no \(view.name)").values
      #expect(values.count == view.count)
      for (i, value) in values.prefix(view.count).enumerated() { model.parameters[view.offset + i] = value }
    }
    let labelValues = try #require(fixture["labels"]).values
    labels = labelValues.map { Int32($0) }
    #expect(labels == [0, 3, 4] && labels.map(Float.init) == labelValues)
  }

  @Test func fixtureHasEveryTensor() {
    let names = CNNFixture.parameterNames
    let expected = Set(
      names + names.map { "grad." + $0 } + [
        "input", "labels", "logits", "loss", "grad.input", "act.0", "act.2", "act.3",
      ])
    #expect(Set(fixture.keys) == expected)
    #expect(fixture["input"]?.shape == [3, 2, 8, 8] && fixture["logits"]?.shape == [3, 5])
  }

  @Test func viewNamesAndShapesAreTheStateDicts() {
    #expect(model.views.map(\.name) == CNNFixture.parameterNames)
    for view in model.views {
      #expect(view.shape == fixture[view.name]?.shape, "\(view.name)")
      #expect(fixture["grad." + view.name]?.shape == view.shape, "grad.\(view.name)")
    }
    #expect(model.parameterCount == CNNFixture.parameterNames.reduce(0) { $0 + fixture[$1]!.values.count })
    #expect(
      model.spec.torchExpression
        == "torch.nn.Sequential(torch.nn.Conv2d(2, 4, kernel_size=3, stride=1, padding=1), torch.nn.ReLU(), "
        + "torch.nn.MaxPool2d(kernel_size=3, stride=2), torch.nn.Conv2d(4, 6, kernel_size=3, stride=2, padding=1), "
        + "torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(24, 5))")
  }

  @Test func forwardLogitsMatchPyTorch() {
    let input = fixture["input"]!.values
    let logits = model.forward(input: input, batch: 3)
    let values = Array(UnsafeBufferPointer(start: logits, count: 15))
    #expect(fixtureMismatch(values, fixture["logits"]!.values) == nil)
  }

  @Test func lossAndEveryGradientMatchPyTorch() {
    let input = fixture["input"]!.values
    model.zeroGradients()
    let result = model.accumulateGradients(input: input, labels: labels, batch: 3, gradientScale: 1 / 3)
    let loss = Double(fixture["loss"]!.values[0])
    #expect(abs(result.lossSum / 3 - loss) <= 1e-5 * max(1, abs(loss)), "loss \(result.lossSum / 3) vs \(loss)")
    for view in model.views {
      let gradient = Array(model.gradients.array[view.offset..<(view.offset + view.count)])
      let expected = fixture["grad." + view.name]!.values
      #expect(expected.contains { $0 != 0 }, "grad.\(view.name) is all zero in the fixture")
      #expect(scaledMismatch(gradient, expected) == nil, "grad.\(view.name)")
    }
    // evaluate gives the same loss.
    #expect(model.evaluate(input: input, labels: labels, batch: 3).lossSum == result.lossSum)
  }

  /// The layers one by one, outside `Sequential`: the activations PyTorch recorded, and, backward through
  /// every layer with dx, the gradient of the mean loss with respect to the input.
  @Test func layerByLayerActivationsAndInputGradient() {
    let layers: [Layer] = [
      Conv2d(inputShape: [2, 8, 8], outChannels: 4, kernel: 3, stride: 1, padding: 1),
      ReLU(inputShape: [4, 8, 8]),
      MaxPool2d(inputShape: [4, 8, 8], kernel: 3, stride: 2, maxBatch: 3),
      Conv2d(inputShape: [4, 3, 3], outChannels: 6, kernel: 3, stride: 2, padding: 1),
      ReLU(inputShape: [6, 2, 2]),
      Flatten(inputShape: [6, 2, 2]),
      Linear(inputShape: [24], outFeatures: 5),
    ]
    let harnesses = layers.map { LayerHarness($0) }
    for (index, harness) in harnesses.enumerated() where harness.layer.parameterCount > 0 {
      harness.parameterValues = fixture["\(index).weight"]!.values + fixture["\(index).bias"]!.values
    }
    var activations = [fixture["input"]!.values]
    for harness in harnesses {
      // Flatten writes nothing: its output is its input's memory.
      activations.append(
        harness.layer.storage == .view ? activations.last! : harness.forward(activations.last!, batch: 3))
    }
    #expect(fixtureMismatch(activations[1], fixture["act.0"]!.values) == nil, "act.0")
    #expect(fixtureMismatch(activations[3], fixture["act.2"]!.values) == nil, "act.2")
    #expect(fixtureMismatch(activations[4], fixture["act.3"]!.values) == nil, "act.3")
    #expect(fixtureMismatch(activations[7], fixture["logits"]!.values) == nil, "logits")

    var gradient = [Float](repeating: 0, count: 15)
    let result = SoftmaxCrossEntropy.forwardBackward(
      logits: activations[7], labels: labels, batch: 3, classes: 5, gradientScale: 1 / 3, dLogits: &gradient)
    #expect(abs(result.lossSum / 3 - Double(fixture["loss"]!.values[0])) <= 1e-5)
    for (index, harness) in harnesses.enumerated().reversed() {
      if harness.layer.storage == .view { continue }
      gradient = harness.backward(x: activations[index], y: activations[index + 1], dy: gradient, batch: 3).dx!
      if harness.layer.parameterCount > 0 {
        let weightCount = harness.layer.parameterShapes[0].shape.reduce(1, *)
        let values = harness.gradientValues
        #expect(scaledMismatch(Array(values[..<weightCount]), fixture["grad.\(index).weight"]!.values) == nil)
        #expect(scaledMismatch(Array(values[weightCount...]), fixture["grad.\(index).bias"]!.values) == nil)
      }
    }
    #expect(scaledMismatch(gradient, fixture["grad.input"]!.values) == nil, "grad.input")
  }
}
