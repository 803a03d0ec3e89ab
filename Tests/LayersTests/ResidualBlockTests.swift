import Testing

@testable import Layers
@testable import Tensors

@Suite struct ResidualBlockTests {
  /// An identity block and a downsampling one (its shortcut a strided 1×1 convolution and a batch norm).
  static let blocks: [(name: String, input: [Int], body: [LayerSpec])] = [
    (
      "identity", [4, 6, 5],
      [
        .conv2d(outChannels: 4, kernel: 3, stride: 1, padding: 1), .batchNorm, .relu,
        .conv2d(outChannels: 4, kernel: 3, stride: 1, padding: 1), .batchNorm,
      ]
    ),
    (
      "downsampling", [3, 7, 6],
      [
        .conv2d(outChannels: 5, kernel: 3, stride: 2, padding: 1), .batchNorm, .relu,
        .conv2d(outChannels: 5, kernel: 3, stride: 1, padding: 1), .batchNorm,
      ]
    ),
  ]

  /// y = body(x) + shortcut(x) in training mode, and its backward: dθ (every inner layer's) and dx against central
  /// differences of the Double reference, which runs the body and the shortcut layer by layer.
  @Test(arguments: [0, 1])
  func forwardAndBackwardMatchTheReference(_ which: Int) {
    let (_, input, body) = Self.blocks[which]
    let batch = 3
    let block = ResidualBlock(inputShape: input, body: body, maxBatch: batch)
    let buffers = FloatBuffer(count: max(block.bufferCount, 1))
    let harness = LayerHarness(block, offset: 2, seed: 101)
    block.bindBuffers(buffers.pointer)
    let x = Reference.randomFloats(batch * input.reduce(1, *), seed: 102)
    let y = harness.forward(x, batch: batch)
    let spec: [LayerSpec] = [.residual(body: body)]
    func reference(_ x: [Double], _ theta: [Double]) -> [Double] {
      Reference.logits(layers: spec, inputShape: input, parameters: theta, input: x, batch: batch)
    }
    let theta = harness.parameterValues.doubles
    #expect(firstMismatch(y.doubles, reference(x.doubles, theta), tolerance: 1e-5) == nil)

    let r = Reference.randomFloats(y.count, seed: 103)
    let (dx, ranges) = harness.backward(x: x, y: y, dy: r, batch: batch)
    let gTheta = Reference.gradient(of: { Reference.dot(r.doubles, reference(x.doubles, $0)) }, at: theta)
    let gX = Reference.gradient(of: { Reference.dot(r.doubles, reference($0, theta)) }, at: x.doubles)
    #expect(scaledMismatchDouble(harness.gradientValues.doubles, gTheta, tolerance: 1e-4) == nil, "dθ")
    #expect(scaledMismatchDouble(dx!.doubles, gX, tolerance: 1e-4) == nil, "dx")
    #expect(rangeProblem(ranges, cover: 2..<(2 + block.parameterCount)) == nil)
    #expect(harness.guardsIntact)
  }

  /// A whole residual network through `Sequential` (batch norms in training mode, the ReLU after each block applied
  /// in its sum): every parameter's gradient against central differences of the Double reference's loss.
  @Test func wholeNetworkGradientMatchesFiniteDifferences() throws {
    let spec = try ModelSpec(
      parsing:
        "seq:conv4k3p1,bn,relu,res(conv4k3p1,bn,relu,conv4k3p1,bn),relu,res(conv6k3s2p1,bn,relu,conv6k3p1,bn),relu,gap,linear3",
      sampleShape: [2, 6, 6], classCount: 3)
    let model = Sequential(spec: spec, maxBatch: 4)
    #expect((model.layers[3] as? ResidualBlock)?.appliesReLU == true)
    #expect((model.layers[4] as? ReLU)?.appliesForward == false)
    model.initializeParameters(seed: 3)
    // γ and β away from 1 and 0, so the batch norms' parameters matter.
    model.parameters.copy(from: Reference.randomFloats(model.parameterCount, seed: 104, in: 0.2...1.2))
    let input = Reference.randomFloats(4 * 72, seed: 105)
    let labels: [Int32] = [2, 0, 1, 1]
    model.zeroGradients()
    _ = model.accumulateGradients(input: input, labels: labels, batch: 4, gradientScale: 1)
    let expected = Reference.gradient(
      of: {
        Reference.loss(
          layers: spec.layers, inputShape: [2, 6, 6], parameters: $0, input: input.doubles, labels: [2, 0, 1, 1],
          classes: 3)
      }, at: model.parameters.array.doubles)
    #expect(scaledMismatchDouble(model.gradients.array.doubles, expected, tolerance: 1e-4) == nil)
  }

  @Test func namesShortcutAndExpression() throws {
    let spec = try ModelSpec(
      parsing:
        "seq:conv8k3p1,bn,relu,res(conv8k3p1,bn,relu,conv8k3p1,bn),relu,res(conv16k3s2p1,bn,relu,conv16k3p1,bn),relu,gap,linear10",
      sampleShape: [1, 28, 28], classCount: 10)
    #expect(spec.outputShapes[3] == [8, 28, 28] && spec.outputShapes[5] == [16, 14, 14])
    let model = Sequential(spec: spec, maxBatch: 2)
    let names = model.views.map(\.name)
    #expect(names.contains("3.body.0.weight") && names.contains("3.body.4.bias"))
    #expect(names.contains("5.shortcut.0.weight") && names.contains("5.shortcut.1.weight"))
    #expect(!names.contains("3.shortcut.0.weight"))
    #expect(model.batchNormNames == ["1", "3.body.1", "3.body.4", "5.body.1", "5.body.4", "5.shortcut.1"])
    #expect(model.bufferViews.map(\.name).contains("5.shortcut.1.running_var"))
    #expect(model.parameterCount == spec.parameterCount)
    #expect(spec.batchStatisticsCount == 2 * (8 + 8 + 8 + 16 + 16 + 16))
    #expect(
      model.layers[5].torchExpression
        == "Residual(torch.nn.Sequential(torch.nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1), "
        + "torch.nn.BatchNorm2d(16), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, kernel_size=3, stride=1, padding=1), "
        + "torch.nn.BatchNorm2d(16)), torch.nn.Sequential(torch.nn.Conv2d(8, 16, kernel_size=1, stride=2, padding=0), "
        + "torch.nn.BatchNorm2d(16)))")
    #expect(spec.moduleDefinitions.contains("class Residual(torch.nn.Module):"))
    #expect(spec.name.hasPrefix("seq:conv8k3p1,bn,relu,res(conv8k3p1,bn,relu,conv8k3p1,bn),relu,res("))
  }

  @Test func badBlocksAreNamed() {
    for (text, fragment) in [
      ("seq:conv8k3p1,res(conv8k3p1,pool2),gap,linear10", "a block's body takes conv, bn and relu"),
      ("seq:conv8k3p1,res(conv8k3p0),gap,linear10", "no 1x1 strided convolution shortcut"),
      ("seq:conv8k3p1,res(conv8k3p1,gap,linear10", "parentheses"),
      ("seq:linear8,res(conv8k3p1),linear10", "needs an image"),
    ] {
      do {
        _ = try ModelSpec(parsing: text, sampleShape: [1, 28, 28], classCount: 10)
        Issue.record("\(text) parsed")
      } catch {
        #expect("\(error)".contains(fragment), "\(text): \(error)")
      }
    }
    // A Linear on an image (no flatten) is written as FlatLinear, defined in the metadata's modules.
    let flat = try! ModelSpec(parsing: "seq:conv4k3p1,relu,linear10", sampleShape: [1, 28, 28], classCount: 10)
    #expect(flat.torchExpression.hasSuffix("FlatLinear(3136, 10))"))
    #expect(flat.moduleDefinitions.contains("class FlatLinear(torch.nn.Linear):"))
  }
}

/// |a − b| ≤ tolerance · max |b| over the tensor; nil when all are, else the first that is not.
func scaledMismatchDouble(_ actual: [Double], _ expected: [Double], tolerance: Double) -> String? {
  guard actual.count == expected.count else { return "\(actual.count) values, expected \(expected.count)" }
  let scale = expected.map(abs).max() ?? 0
  for i in actual.indices where !(abs(actual[i] - expected[i]) <= tolerance * scale) {
    return "[\(i)]: \(actual[i]), expected \(expected[i]) (max |expected| \(scale))"
  }
  return nil
}
