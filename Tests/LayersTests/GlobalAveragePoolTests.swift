import Testing

@testable import Layers
@testable import Tensors

@Suite struct GlobalAveragePoolTests {
  /// y[b][c] = the mean of x[b][c] over the pixels; dx = dy / (h·w) at every pixel: against the Double reference
  /// and central differences of L = Σ r ⊙ y.
  @Test func forwardAndBackwardMatchTheMean() {
    let (batch, shape) = (3, [4, 5, 3])
    let layer = GlobalAveragePool(inputShape: shape)
    #expect(layer.outputShape == [4])
    let harness = LayerHarness(layer)
    let x = Reference.randomFloats(batch * 60, seed: 95)
    let y = harness.forward(x, batch: batch)
    func reference(_ x: [Double]) -> [Double] {
      Reference.logits(
        layers: [.globalAveragePool], inputShape: shape, parameters: [], input: x, batch: batch)
    }
    #expect(firstMismatch(y.doubles, reference(x.doubles), tolerance: 1e-6) == nil)
    let r = Reference.randomFloats(y.count, seed: 96)
    let dx = harness.backward(x: x, y: y, dy: r, batch: batch).dx!
    let expected = Reference.gradient(of: { Reference.dot(r.doubles, reference($0)) }, at: x.doubles)
    #expect(firstMismatch(dx.doubles, expected, tolerance: 1e-5) == nil)
  }

  /// PyTorch writes it as a nested Sequential, one module, so the indices after it are the token's.
  @Test func oneModuleInTheExpression() throws {
    let spec = try ModelSpec(
      parsing: "seq:conv8k3p1,bn,relu,gap,linear10", sampleShape: [1, 28, 28], classCount: 10)
    #expect(spec.outputShapes[3] == [8])
    #expect(Sequential(spec: spec, maxBatch: 1).views.map(\.name).last == "4.bias")
    #expect(
      spec.torchExpression.contains(
        "torch.nn.ReLU(), torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()), torch.nn.Linear(8, 10)"
      ))
    #expect(throws: ModelSpecError.self) {
      try ModelSpec(parsing: "seq:linear8,gap,linear10", sampleShape: [1, 28, 28], classCount: 10)
    }
  }
}
