import Foundation
import Testing

@testable import Layers
@testable import Tensors

@Suite struct SequentialTests {
  static func defaultCNN() throws -> ModelSpec {
    try ModelSpec(parsing: "cnn", sampleShape: [1, 28, 28], classCount: 10)
  }

  @Test func defaultCNNViewsFollowTheStateDict() throws {
    let model = Sequential(spec: try Self.defaultCNN(), maxBatch: 1)
    let expected = [
      ParameterView(name: "0.weight", shape: [32, 1, 3, 3], offset: 0, count: 288),
      ParameterView(name: "0.bias", shape: [32], offset: 288, count: 32),
      ParameterView(name: "3.weight", shape: [64, 32, 3, 3], offset: 320, count: 18_432),
      ParameterView(name: "3.bias", shape: [64], offset: 18_752, count: 64),
      ParameterView(name: "7.weight", shape: [128, 3136], offset: 18_816, count: 401_408),
      ParameterView(name: "7.bias", shape: [128], offset: 420_224, count: 128),
      ParameterView(name: "9.weight", shape: [10, 128], offset: 420_352, count: 1280),
      ParameterView(name: "9.bias", shape: [10], offset: 421_632, count: 10),
    ]
    #expect(model.views == expected)
    #expect(model.parameterCount == 421_642)
    #expect(model.parameters.count == 421_642 && model.gradients.count == 421_642)
    #expect(model.layers.count == 10)
  }

  @Test func torchExpressionOfTheDefaultCNN() throws {
    let expected =
      "torch.nn.Sequential(torch.nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1), torch.nn.ReLU(), "
      + "torch.nn.MaxPool2d(kernel_size=2, stride=2), torch.nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1), "
      + "torch.nn.ReLU(), torch.nn.MaxPool2d(kernel_size=2, stride=2), torch.nn.Flatten(), "
      + "torch.nn.Linear(3136, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))"
    #expect(try Self.defaultCNN().torchExpression == expected)
    #expect(
      ModelSpec(layerSizes: [784, 256, 128, 10]).torchExpression
        == "torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), "
        + "torch.nn.ReLU(), torch.nn.Linear(128, 10))")
  }

  /// The ranges of the gradientsReady overload: adjacent, descending, covering 0..<parameterCount once and ending
  /// at 0; each final when reported (nothing later in the call changes it); the same bits whatever the blocks.
  @Test(arguments: [Int.max, 1 << 16, 10_000, 1000])
  func readyRangesOfTheDefaultCNN(rangeElements: Int) throws {
    let model = Sequential(spec: try Self.defaultCNN(), maxBatch: 2)
    model.initializeParameters(seed: 12)
    let input = Reference.randomFloats(2 * 784, seed: 13, in: 0...1)
    let labels: [Int32] = [3, 8]
    var ranges: [Range<Int>] = []
    var reported: [(Range<Int>, [Float])] = []
    let result = model.accumulateGradients(
      input: input, labels: labels, batch: 2, gradientScale: 0.5, rangeElements: rangeElements
    ) { range in
      ranges.append(range)
      reported.append(
        (
          range,
          Array(
            UnsafeBufferPointer(
              start: model.gradients.pointer + range.lowerBound,
              count: range.count))
        ))
    }
    #expect(rangeProblem(ranges, cover: 0..<421_642) == nil)
    #expect(ranges.last?.lowerBound == 0)
    let final = model.gradients.array
    for (range, values) in reported {
      #expect(bitDifferences(Array(final[range]), values) == nil, "\(range) changed after it was reported")
    }
    // Reverse layer order: 9.weight+9.bias, then 7.bias, 7.weight (in blocks when large), conv 3, conv 0.
    #expect(ranges.suffix(2) == [320..<18_816, 0..<320])
    if rangeElements >= 401_408 {
      #expect(ranges == [420_352..<421_642, 18_816..<420_352, 320..<18_816, 0..<320])
    } else if rangeElements >= 1280 {
      #expect(ranges.prefix(2) == [420_352..<421_642, 420_224..<420_352])
      #expect(ranges.count > 5)
    } else {
      // 9.weight is in blocks too: 9.bias comes first.
      #expect(ranges.first == 421_632..<421_642)
      #expect(ranges.contains(420_224..<420_352))
    }

    let plain = Sequential(spec: try Self.defaultCNN(), maxBatch: 2)
    plain.initializeParameters(seed: 12)
    #expect(plain.accumulateGradients(input: input, labels: labels, batch: 2, gradientScale: 0.5) == result)
    #expect(bitDifferences(plain.gradients.array, final) == nil)
  }

  /// Every weight and bias within ±1/√fan_in (fan_in = in·k·k for a convolution), and not much narrower.
  @Test func initializationWithinFanInBounds() throws {
    let model = Sequential(spec: try Self.defaultCNN(), maxBatch: 1)
    model.initializeParameters(seed: 77)
    let fanIn = ["0": 1.0 * 9, "3": 32.0 * 9, "7": 3136.0, "9": 128.0]
    for view in model.views {
      let bound = 1 / fanIn[String(view.name.split(separator: ".")[0])]!.squareRoot()
      let values = (view.offset..<(view.offset + view.count)).map { Double(model.parameters[$0]) }
      #expect(values.allSatisfy { abs($0) <= bound }, "\(view.name) within ±\(bound)")
      // Large tensors reach both ends; even the 10-element bias reaches half of its bound.
      if view.count >= 200 {
        #expect(values.max()! > 0.9 * bound && values.min()! < -0.9 * bound, "\(view.name) spans ±\(bound)")
      } else {
        #expect(values.map(abs).max()! > 0.5 * bound, "\(view.name) spans ±\(bound)")
      }
    }
    let again = Sequential(spec: try Self.defaultCNN(), maxBatch: 1)
    again.initializeParameters(seed: 77)
    #expect(bitDifferences(again.parameters.array, model.parameters.array) == nil)
  }

  /// Gradient storage longer than the model: its tail belongs to the caller, through init, zeroGradients and
  /// both accumulateGradients overloads.
  @Test func gradientStorageTailIsLeftAlone() throws {
    let spec = try ModelSpec(
      parsing: "seq:conv3k3s2p1,relu,pool2,flatten,linear4", sampleShape: [2, 9, 9], classCount: 4)
    let storage = FloatBuffer(count: spec.parameterCount + 4)
    let tail: [Float] = [42, -1, .infinity, 7]
    for i in 0..<storage.count { storage[i] = i < spec.parameterCount ? 99 : tail[i - spec.parameterCount] }
    let model = Sequential(spec: spec, maxBatch: 3, gradientStorage: storage)
    func tailNow() -> [Float] { Array(model.gradients.array[spec.parameterCount...]) }
    #expect(model.gradients === storage)
    #expect(model.gradients.array[..<spec.parameterCount].allSatisfy { $0 == 0 })
    #expect(tailNow() == tail)
    model.initializeParameters(seed: 5)
    let input = Reference.randomFloats(3 * 162, seed: 6)
    let labels: [Int32] = [1, 2, 3]
    _ = model.accumulateGradients(input: input, labels: labels, batch: 3, gradientScale: 1)
    #expect(tailNow() == tail)
    #expect(model.gradients.array[..<spec.parameterCount].contains { $0 != 0 })
    var covered = 0
    _ = model.accumulateGradients(input: input, labels: labels, batch: 3, gradientScale: 1, rangeElements: 10) {
      covered += $0.count
    }
    #expect(covered == spec.parameterCount)
    #expect(tailNow() == tail)
    model.zeroGradients()
    #expect(model.gradients.array[..<spec.parameterCount].allSatisfy { $0 == 0 })
    #expect(tailNow() == tail)
  }

  @Test func batchRowsAreIndependent() throws {
    let spec = try ModelSpec(
      parsing: "seq:conv3k3s2p1,relu,pool2,flatten,linear4", sampleShape: [2, 9, 9], classCount: 4)
    let model = Sequential(spec: spec, maxBatch: 3)
    model.initializeParameters(seed: 8)
    let input = Reference.randomFloats(3 * 162, seed: 9)
    let all = Array(UnsafeBufferPointer(start: model.forward(input: input, batch: 3), count: 12))
    let last = Array(input[(2 * 162)...])
    let alone = Array(UnsafeBufferPointer(start: model.forward(input: last, batch: 1), count: 4))
    #expect(fixtureMismatch(alone, Array(all[8...]), tolerance: 1e-6) == nil)
  }
}
