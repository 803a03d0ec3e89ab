import Checkpoints
import Foundation
import Testing

@testable import Layers
@testable import Tensors

/// One BatchNorm configuration: per-sample shape ([c, h, w] or [n]) and the batch.
struct BatchNormCase: CustomTestStringConvertible, Sendable {
  var shape: [Int]
  var batch: Int

  var testDescription: String { "\(shape.map(String.init).joined(separator: "x")), batch \(batch)" }
  var channels: Int { shape[0] }
  var pixels: Int { shape.dropFirst().reduce(1, *) }
  var inputCount: Int { batch * shape.reduce(1, *) }

  /// The values of channel ch in x [batch][c][pixels], as indices.
  func indices(ofChannel ch: Int) -> [Int] {
    (0..<batch).flatMap { b in (0..<pixels).map { p in (b * channels + ch) * pixels + p } }
  }

  /// PyTorch's training-mode forward in Double: y = (x − mean)/√(var + ε)·γ + β per channel, var biased;
  /// theta = γ then β. Also each channel's mean and unbiased variance.
  func reference(_ x: [Double], _ theta: [Double]) -> (y: [Double], mean: [Double], unbiased: [Double]) {
    var y = [Double](repeating: 0, count: x.count)
    var means: [Double] = []
    var unbiased: [Double] = []
    for ch in 0..<channels {
      let at = indices(ofChannel: ch)
      let n = Double(at.count)
      let mean = at.reduce(0) { $0 + x[$1] } / n
      let variance = at.reduce(0) { $0 + (x[$1] - mean) * (x[$1] - mean) } / n
      for i in at { y[i] = (x[i] - mean) / (variance + 1e-5).squareRoot() * theta[ch] + theta[channels + ch] }
      means.append(mean)
      unbiased.append(n > 1 ? variance * n / (n - 1) : variance)
    }
    return (y, means, unbiased)
  }

  func makeLayer() -> (BatchNorm, FloatBuffer) {
    let layer = BatchNorm(inputShape: shape)
    let buffers = FloatBuffer(count: layer.bufferCount)
    layer.bindBuffers(buffers.pointer)
    return (layer, buffers)
  }
}

@Suite struct BatchNormTests {
  static let cases = [
    BatchNormCase(shape: [3, 4, 5], batch: 3),
    BatchNormCase(shape: [2, 1, 1], batch: 4),
    BatchNormCase(shape: [4, 3, 3], batch: 1),
    BatchNormCase(shape: [6], batch: 5),
    BatchNormCase(shape: [2, 7, 3], batch: 2),
  ]

  @Test(arguments: cases)
  func trainingForwardMatchesTheFormula(_ c: BatchNormCase) {
    let (layer, _) = c.makeLayer()
    let harness = LayerHarness(layer, offset: 2, seed: 80)
    let x = Reference.randomFloats(c.inputCount, seed: 81, in: -1...3)
    let y = harness.forward(x, batch: c.batch)
    let expected = c.reference(x.doubles, harness.parameterValues.doubles)
    #expect(firstMismatch(y.doubles, expected.y, tolerance: 1e-5) == nil)
    #expect(
      firstMismatch(layer.batchStatistics.array.doubles, expected.mean + expected.unbiased, tolerance: 1e-5) == nil)
    #expect(harness.guardsIntact)
  }

  /// L = Σ r ⊙ bn(x) in training mode: dγ, dβ (added to what was there) and dx against central differences of the
  /// Double formula, which differentiates through the batch's mean and variance too.
  @Test(arguments: cases)
  func backwardMatchesFiniteDifferences(_ c: BatchNormCase) {
    let (layer, _) = c.makeLayer()
    let harness = LayerHarness(layer, offset: 3, seed: 82)
    let x = Reference.randomFloats(c.inputCount, seed: 83)
    let y = harness.forward(x, batch: c.batch)
    let r = Reference.randomFloats(y.count, seed: 84)
    let start = Reference.randomFloats(layer.parameterCount, seed: 85)
    harness.gradientValues = start
    let (dx, ranges) = harness.backward(x: x, y: y, dy: r, batch: c.batch)
    let added = zip(harness.gradientValues, start).map { Double($0 - $1) }

    let (xd, theta, rd) = (x.doubles, harness.parameterValues.doubles, r.doubles)
    let gTheta = Reference.gradient(of: { Reference.dot(rd, c.reference(xd, $0).y) }, at: theta)
    let gX = Reference.gradient(of: { Reference.dot(rd, c.reference($0, theta).y) }, at: xd)
    #expect(firstMismatch(added, gTheta, tolerance: 1e-5) == nil, "dγ, dβ")
    #expect(firstMismatch(dx!.doubles, gX, tolerance: 1e-5) == nil, "dx")
    #expect(ranges == [3..<(3 + layer.parameterCount)])
    #expect(harness.guardsIntact)

    // Without dx (a first layer) the parameter gradients are the same bits.
    let withInput = harness.gradientValues
    harness.gradientValues = start
    let (none, _) = harness.backward(x: x, y: y, dy: r, batch: c.batch, wantsInputGradient: false)
    #expect(none == nil && harness.gradientValues == withInput)
  }

  /// A momentum update from the batch's statistics, then evaluation with the running statistics.
  @Test(arguments: [cases[0], cases[3]])
  func runningStatisticsThenEvaluation(_ c: BatchNormCase) {
    let (layer, buffers) = c.makeLayer()
    let harness = LayerHarness(layer, seed: 86)
    layer.resetBuffers()
    #expect(buffers.array == [Float](repeating: 0, count: c.channels) + [Float](repeating: 1, count: c.channels))
    let start = Reference.randomFloats(2 * c.channels, seed: 87, in: 0.5...1.5)
    buffers.copy(from: start)
    let x = Reference.randomFloats(c.inputCount, seed: 88, in: -2...1)
    _ = harness.forward(x, batch: c.batch)
    #expect(buffers.array == start, "the forward leaves the running statistics to the trainer")
    layer.updateRunningStatistics(layer.batchStatistics.pointer, divisor: 1)
    #expect(layer.batchesTracked == 1)
    let expected = c.reference(x.doubles, harness.parameterValues.doubles)
    var running: [Double] = []
    for ch in 0..<c.channels { running.append(0.9 * Double(start[ch]) + 0.1 * expected.mean[ch]) }
    for ch in 0..<c.channels { running.append(0.9 * Double(start[c.channels + ch]) + 0.1 * expected.unbiased[ch]) }
    #expect(firstMismatch(buffers.array.doubles, running, tolerance: 1e-6) == nil)

    layer.training = false
    let y = harness.forward(x, batch: c.batch)
    let theta = harness.parameterValues.doubles
    var evaluated = [Double](repeating: 0, count: x.count)
    for ch in 0..<c.channels {
      let scale: Double = theta[ch] / (running[c.channels + ch] + 1e-5).squareRoot()
      for i in c.indices(ofChannel: ch) {
        let centred: Double = Double(x[i]) - running[ch]
        evaluated[i] = centred * scale + theta[c.channels + ch]
      }
    }
    #expect(firstMismatch(y.doubles, evaluated, tolerance: 1e-5) == nil)
  }

  /// The statistics of K = 3 workers' micro-batches summed over the workers (as `--batch-norm sync` does) give
  /// what one layer computes on the whole batch: the forward's y, and the backward's dx; dγ and dβ of the parts
  /// add up to the whole's. The workers run in lock-step on threads, meeting in a summing synchronizer.
  @Test func synchronisedStatisticsAreTheWholeBatchs() throws {
    let c = BatchNormCase(shape: [3, 4, 4], batch: 6)
    let (whole, _) = c.makeLayer()
    let harness = LayerHarness(whole, seed: 89)
    let x = Reference.randomFloats(c.inputCount, seed: 90, in: -1...2)
    let y = harness.forward(x, batch: c.batch)
    let dy = Reference.randomFloats(y.count, seed: 91)
    let dx = harness.backward(x: x, y: y, dy: dy, batch: c.batch).dx!

    let workers = 3
    let part = c.batch / workers
    let perWorker = part * c.shape.reduce(1, *)
    let meeting = SummingMeeting(parties: workers)
    let results = WorkerResults(count: workers)
    let group = DispatchGroup()
    for worker in 0..<workers {
      group.enter()
      let thread = Thread {
        let (layer, _) = c.makeLayer()
        layer.synchronizer = MeetingSynchronizer(meeting: meeting)
        let local = LayerHarness(layer, seed: 89)
        let slice = Array(x[(worker * perWorker)..<((worker + 1) * perWorker)])
        let yPart = local.forward(slice, batch: part)
        let dyPart = Array(dy[(worker * perWorker)..<((worker + 1) * perWorker)])
        let dxPart = local.backward(x: slice, y: yPart, dy: dyPart, batch: part).dx!
        results.set(worker, y: yPart, dx: dxPart, gradients: local.gradientValues)
        group.leave()
      }
      thread.start()
    }
    group.wait()
    let joinedY = (0..<workers).flatMap { results.y[$0] }
    let joinedDx = (0..<workers).flatMap { results.dx[$0] }
    let summedGradients = (0..<whole.parameterCount).map { i in
      (0..<workers).reduce(0.0) { $0 + Double(results.gradients[$1][i]) }
    }
    #expect(firstMismatch(joinedY.doubles, y.doubles, tolerance: 1e-6) == nil, "y")
    #expect(firstMismatch(joinedDx.doubles, dx.doubles, tolerance: 1e-6) == nil, "dx")
    #expect(firstMismatch(summedGradients, harness.gradientValues.doubles, tolerance: 1e-5) == nil, "dγ, dβ")
  }

  @Test func shapesNamesAndExpression() throws {
    let image = BatchNorm(inputShape: [8, 14, 14])
    #expect(image.outputShape == [8, 14, 14] && image.parameterShapes.map(\.shape) == [[8], [8]])
    #expect(image.bufferShapes.map(\.suffix) == ["running_mean", "running_var"])
    #expect(image.torchExpression == "torch.nn.BatchNorm2d(8)")
    #expect(BatchNorm(inputShape: [6]).torchExpression == "torch.nn.BatchNorm1d(6)")

    let spec = try ModelSpec(
      parsing: "seq:conv4k3p1,bn,relu,pool2,flatten,linear6,bn,relu,linear5", sampleShape: [2, 8, 8], classCount: 5)
    #expect(spec.name == "seq:conv4k3p1,bn,relu,pool2,flatten,linear6,bn,relu,linear5")
    #expect(spec.parameterCount == 76 + 8 + 390 + 12 + 35)
    #expect(spec.batchStatisticsCount == 2 * 4 + 2 * 6)
    let model = Sequential(spec: spec, maxBatch: 4)
    #expect(
      model.views.map(\.name) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias", "6.weight", "6.bias", "8.weight", "8.bias",
      ])
    #expect(model.bufferViews.map(\.name) == ["1.running_mean", "1.running_var", "6.running_mean", "6.running_var"])
    #expect(model.bufferCount == 20 && model.batchNorms.count == 2)
    // PyTorch's initialisation: γ = 1, β = 0, running mean 0 and variance 1.
    model.initializeParameters(seed: 3)
    let gamma = model.views.first { $0.name == "1.weight" }!
    #expect(model.parameters.array[gamma.offset..<(gamma.offset + 8)] == [1, 1, 1, 1, 0, 0, 0, 0])
    #expect(model.buffers.array[0..<8] == [0, 0, 0, 0, 1, 1, 1, 1])
  }
}

/// K threads' sums meet here: each adds its values, waits for the others, and takes the total.
final class SummingMeeting: @unchecked Sendable {
  private let condition = NSCondition()
  private let parties: Int
  private var arrived = 0
  private var generation = 0
  private var total: [Double] = []
  private var result: [Double] = []

  init(parties: Int) { self.parties = parties }

  func sum(_ values: [Double]) -> [Double] {
    condition.lock()
    defer { condition.unlock() }
    if total.isEmpty { total = [Double](repeating: 0, count: values.count) }
    for i in values.indices { total[i] += values[i] }
    arrived += 1
    let mine = generation
    if arrived == parties {
      result = total
      total = []
      arrived = 0
      generation += 1
      condition.broadcast()
    } else {
      while generation == mine { condition.wait() }
    }
    return result
  }
}

final class MeetingSynchronizer: StatisticsSynchronizer {
  let meeting: SummingMeeting
  init(meeting: SummingMeeting) { self.meeting = meeting }
  func sumOverRanks(_ values: UnsafeMutableBufferPointer<Double>) {
    let total = meeting.sum(Array(values))
    for i in values.indices { values[i] = total[i] }
  }
}

final class WorkerResults: @unchecked Sendable {
  private let lock = NSLock()
  private var ys: [[Float]]
  private var dxs: [[Float]]
  private var grads: [[Float]]
  init(count: Int) {
    ys = Array(repeating: [], count: count)
    dxs = ys
    grads = ys
  }
  func set(_ worker: Int, y: [Float], dx: [Float], gradients: [Float]) {
    lock.withLock {
      ys[worker] = y
      dxs[worker] = dx
      grads[worker] = gradients
    }
  }
  var y: [[Float]] { lock.withLock { ys } }
  var dx: [[Float]] { lock.withLock { dxs } }
  var gradients: [[Float]] { lock.withLock { grads } }
}

/// Fixtures/batchnorm_fixture.safetensors, written by Fixtures/make_batchnorm_fixture.py (PyTorch, float64 from
/// float32 values): BatchNorm2d and BatchNorm1d in training mode, the running statistics one forward leaves, and
/// the evaluation-mode logits.
@Suite struct BatchNormFixtureTests {
  static let spec = "seq:conv4k3p1,bn,relu,pool2,flatten,linear6,bn,relu,linear5"
  let fixture: [String: NamedTensor]
  let model: Sequential
  let labels: [Int32]

  init() throws {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("Fixtures/batchnorm_fixture.safetensors")
    let tensors = try SafeTensors.decode([UInt8](try Data(contentsOf: url)), path: url.path).tensors
    fixture = Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0) })
    model = Sequential(
      spec: try ModelSpec(parsing: Self.spec, sampleShape: [2, 8, 8], classCount: 5), maxBatch: 4)
    for view in model.views {
      let values = try #require(fixture[view.name], "the fixture has no \(view.name)").values
      for (i, value) in values.enumerated() { model.parameters[view.offset + i] = value }
    }
    for view in model.bufferViews {
      let values = try #require(fixture[view.name], "the fixture has no \(view.name)").values
      for (i, value) in values.enumerated() { model.buffers[view.offset + i] = value }
    }
    labels = try #require(fixture["labels"]).values.map { Int32($0) }
  }

  @Test func trainingForwardLossAndGradientsMatchPyTorch() {
    let input = fixture["input"]!.values
    let logits = model.forward(input: input, batch: 4)
    #expect(fixtureMismatch(Array(UnsafeBufferPointer(start: logits, count: 20)), fixture["logits"]!.values) == nil)
    model.zeroGradients()
    let result = model.accumulateGradients(input: input, labels: labels, batch: 4, gradientScale: 1 / 4)
    let loss = Double(fixture["loss"]!.values[0])
    #expect(abs(result.lossSum / 4 - loss) <= 1e-5 * max(1, abs(loss)))
    for view in model.views {
      let gradient = Array(model.gradients.array[view.offset..<(view.offset + view.count)])
      let expected = fixture["grad." + view.name]!.values
      if view.name == "0.bias" || view.name == "5.bias" {
        // A bias right before a batch norm moves the batch's mean with it: its gradient is 0 (PyTorch's ~1e-17,
        // float32 rounding here), against gradients of order 0.1 elsewhere.
        #expect(expected.allSatisfy { abs($0) < 1e-12 } && gradient.allSatisfy { abs($0) < 1e-6 }, "\(gradient)")
        continue
      }
      #expect(scaledMismatch(gradient, expected) == nil, "grad.\(view.name)")
    }
  }

  @Test func runningStatisticsAndEvaluationMatchPyTorch() {
    let input = fixture["input"]!.values
    _ = model.forward(input: input, batch: 4)
    var statistics = [Float](repeating: 0, count: model.batchStatisticsCount)
    model.copyBatchStatistics(into: &statistics, weight: 1)
    model.updateRunningStatistics(from: statistics, divisor: 1)
    #expect(model.batchesTracked == [1, 1])
    for view in model.bufferViews {
      let values = Array(model.buffers.array[view.offset..<(view.offset + view.count)])
      #expect(fixtureMismatch(values, fixture["after." + view.name]!.values, tolerance: 1e-6) == nil, "\(view.name)")
    }
    for batchNorm in model.batchNorms { batchNorm.training = false }
    defer { for batchNorm in model.batchNorms { batchNorm.training = true } }
    let logits = model.forward(input: input, batch: 4)
    #expect(
      fixtureMismatch(Array(UnsafeBufferPointer(start: logits, count: 20)), fixture["eval_logits"]!.values) == nil)
    // `evaluate` normalises with the running statistics too, and leaves the layers in training mode.
    for batchNorm in model.batchNorms { batchNorm.training = true }
    let evaluated = model.evaluate(input: input, labels: labels, batch: 4)
    #expect(model.batchNorms.allSatisfy { $0.training })
    var expectedLoss = 0.0
    let eval = fixture["eval_logits"]!.values
    for b in 0..<4 {
      let row = eval[(5 * b)..<(5 * b + 5)].map(Double.init)
      let top = row.max()!
      expectedLoss += log(row.reduce(0) { $0 + exp($1 - top) }) + top - row[Int(labels[b])]
    }
    #expect(abs(evaluated.lossSum - expectedLoss) <= 1e-5 * max(1, expectedLoss))
  }
}
