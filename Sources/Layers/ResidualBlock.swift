import Tensors

/// `res(T1,T2,...)`: y = body(x) + shortcut(x), He et al.'s basic block (the ReLU after the sum is a token of its
/// own, after the block).
///
/// Shapes per sample: x [c, h, w] → y [c', h', w'], the body's output. The shortcut is the identity when the body
/// keeps the shape, else a 1×1 convolution of stride s = h / h' to c' channels followed by a batch norm
/// (`shortcutStride`). Parameters and buffers are named as PyTorch names the module `Residual(body, shortcut)`
/// (`ModelSpec.moduleDefinitions`): `body.<i>.<name>` for the body's layer i, `shortcut.0.*` and `shortcut.1.*`.
///
/// The body runs as a little `Sequential` of its own: each layer writes a buffer of the block's (a ReLU in place
/// over the layer before it, applied by that layer's normalising or bias pass), for the block's largest batch.
/// Backward: dy goes to both branches; the shortcut's backward runs first (its parameters come after the body's,
/// and gradients are reported from the top of the buffer down), then the body's; dx is the sum of their input
/// gradients (dy itself for the identity).
public final class ResidualBlock: Layer {
  public let inputShape: [Int]
  public let outputShape: [Int]
  /// The body's layers and the shortcut's (empty for the identity).
  public let body: [Layer]
  public let shortcut: [Layer]
  private let maxBatch: Int
  /// outputs[i]: the buffer body layer i writes (a ReLU in place: its input's); the shortcut's two likewise.
  private var bodyOutputs: [UnsafeMutablePointer<Float>] = []
  private var shortcutOutputs: [UnsafeMutablePointer<Float>] = []
  /// Gradients of those buffers, shared the same way; the last body buffer's gradient receives a copy of dy (a
  /// ReLU inside the body masks its gradient in place, and the shortcut needs dy as it came).
  private var bodyGradients: [UnsafeMutablePointer<Float>] = []
  private var shortcutGradients: [UnsafeMutablePointer<Float>] = []
  /// y = max(body + shortcut, 0): the ReLU after the block, applied in its sum (set by `Sequential`).
  var appliesReLU = false
  /// The shortcut's input gradient, added to the body's.
  private let shortcutInputGradient: FloatBuffer
  private var owned: [FloatBuffer] = []

  /// The stride of the 1×1 convolution that maps `input` [c, h, w] to `output` [c', h', w'], or nil when none does
  /// (h' = ⌊(h − 1)/s⌋ + 1, the same for w).
  public static func shortcutStride(from input: [Int], to output: [Int]) -> Int? {
    guard input.count == 3, output.count == 3 else { return nil }
    for stride in 1...max(input[1], input[2]) {
      if (input[1] - 1) / stride + 1 == output[1] && (input[2] - 1) / stride + 1 == output[2] { return stride }
    }
    return nil
  }

  public init(inputShape: [Int], body spec: [LayerSpec], maxBatch: Int) {
    precondition(inputShape.count == 3 && !spec.isEmpty, "a residual block takes an image and a body")
    self.inputShape = inputShape
    self.maxBatch = maxBatch
    var shapes = [inputShape]
    for layer in spec { shapes.append(try! ModelSpec.outputShape(of: layer, input: shapes.last!)) }
    outputShape = shapes.last!
    body = zip(spec, shapes).map { layer, shape in Sequential.makeLayers(layer, shape: shape, maxBatch: maxBatch) }
    if outputShape == inputShape {
      shortcut = []
    } else {
      let stride = Self.shortcutStride(from: inputShape, to: outputShape)!
      let conv = Conv2d(inputShape: inputShape, outChannels: outputShape[0], kernel: 1, stride: stride, padding: 0)
      shortcut = [conv, BatchNorm(inputShape: outputShape)]
    }
    shortcutInputGradient = FloatBuffer(count: shortcut.isEmpty ? 1 : maxBatch * inputShape.reduce(1, *))
    (bodyOutputs, bodyGradients) = makeBuffers(body, fusing: true)
    (shortcutOutputs, shortcutGradients) = makeBuffers(shortcut, fusing: false)
  }

  /// Each layer's output and gradient buffer: its own, or its input's for a ReLU in place (applied by the layer
  /// before it, when that is a convolution or batch norm and `fusing`).
  private func makeBuffers(_ layers: [Layer], fusing: Bool) -> (
    [UnsafeMutablePointer<Float>], [UnsafeMutablePointer<Float>]
  ) {
    var outputs: [UnsafeMutablePointer<Float>] = []
    var gradients: [UnsafeMutablePointer<Float>] = []
    for (index, layer) in layers.enumerated() {
      if index > 0, layer.storage == .inPlace {
        outputs.append(outputs[index - 1])
        gradients.append(gradients[index - 1])
        if fusing, let relu = layer as? ReLU {
          if let conv = layers[index - 1] as? Conv2d {
            conv.appliesReLU = true
            relu.appliesForward = false
          } else if let batchNorm = layers[index - 1] as? BatchNorm {
            batchNorm.appliesReLU = true
            relu.appliesForward = false
          }
        }
        continue
      }
      let activation = FloatBuffer(count: maxBatch * layer.outputCount)
      let gradient = FloatBuffer(count: maxBatch * layer.outputCount)
      owned += [activation, gradient]
      outputs.append(activation.pointer)
      gradients.append(gradient.pointer)
    }
    return (outputs, gradients)
  }

  public var storage: LayerStorage { .own }

  /// The inner layers with the name prefix PyTorch gives them inside `Residual`.
  public var namedLayers: [(prefix: String, layer: Layer)] {
    body.enumerated().map { ("body.\($0.offset).", $0.element) }
      + shortcut.enumerated().map { ("shortcut.\($0.offset).", $0.element) }
  }

  public var parameterShapes: [(suffix: String, shape: [Int])] {
    namedLayers.flatMap { prefix, layer in layer.parameterShapes.map { (prefix + $0.suffix, $0.shape) } }
  }
  public var bufferShapes: [(suffix: String, shape: [Int])] {
    namedLayers.flatMap { prefix, layer in layer.bufferShapes.map { (prefix + $0.suffix, $0.shape) } }
  }
  public var batchNormsInside: [(path: String, layer: BatchNorm)] {
    namedLayers.compactMap { prefix, layer in (layer as? BatchNorm).map { (String(prefix.dropLast()), $0) } }
  }

  public var torchExpression: String {
    let inner = "torch.nn.Sequential(" + body.map(\.torchExpression).joined(separator: ", ") + ")"
    guard !shortcut.isEmpty else { return "Residual(\(inner))" }
    return "Residual(\(inner), torch.nn.Sequential(" + shortcut.map(\.torchExpression).joined(separator: ", ") + "))"
  }

  public func bind(
    parameters: UnsafeMutablePointer<Float>?, gradients: UnsafeMutablePointer<Float>?, offset: Int, index: Int
  ) {
    var position = 0
    for (_, layer) in namedLayers {
      let count = layer.parameterCount
      layer.bind(
        parameters: count > 0 ? parameters! + position : nil, gradients: count > 0 ? gradients! + position : nil,
        offset: offset + position, index: index)
      position += count
    }
  }

  public func bindBuffers(_ buffers: UnsafeMutablePointer<Float>?) {
    var position = 0
    for (_, layer) in namedLayers {
      layer.bindBuffers(layer.bufferCount > 0 ? buffers! + position : nil)
      position += layer.bufferCount
    }
  }

  /// Each inner layer's own initialisation, body first (state_dict order).
  public func initializeParameters(using generator: inout Xoshiro256) {
    for (_, layer) in namedLayers { layer.initializeParameters(using: &generator) }
  }

  public func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
    run(body, outputs: bodyOutputs, from: x, batch: batch)
    let count = batch * outputCount
    let bodyOutput = bodyOutputs[body.count - 1]
    var other = x
    if !shortcut.isEmpty {
      run(shortcut, outputs: shortcutOutputs, from: x, batch: batch)
      other = UnsafePointer(shortcutOutputs[shortcut.count - 1])
    }
    if appliesReLU {
      for i in 0..<count {
        let sum = bodyOutput[i] + other[i]
        y[i] = sum > 0 ? sum : 0
      }
    } else {
      for i in 0..<count { y[i] = bodyOutput[i] + other[i] }
    }
    StepProfile.current?.lap(.elementwise)
  }

  private func run(
    _ layers: [Layer], outputs: [UnsafeMutablePointer<Float>], from x: UnsafePointer<Float>, batch: Int
  ) {
    var input = x
    let profile = StepProfile.current
    for (layer, output) in zip(layers, outputs) {
      let mark = profile?.mark()
      layer.forward(input, into: output, batch: batch)
      if let mark { profile?.chargeNested(layer, backward: false, since: mark) }
      input = UnsafePointer(output)
    }
  }

  public func backward(
    x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, rangeElements: Int, gradientsReady: (Range<Int>) -> Void
  ) {
    let count = batch * outputCount
    if !shortcut.isEmpty {
      shortcutGradients[shortcut.count - 1].update(from: dy, count: count)
      back(
        shortcut, outputs: shortcutOutputs, gradients: shortcutGradients, x: x,
        dx: dx == nil ? nil : shortcutInputGradient.pointer, batch: batch, gradientsReady: gradientsReady)
    }
    bodyGradients[body.count - 1].update(from: dy, count: count)
    back(
      body, outputs: bodyOutputs, gradients: bodyGradients, x: x, dx: dx, batch: batch,
      gradientsReady: gradientsReady)
    guard let dx else { return }
    let inputCount = batch * self.inputCount
    let other = shortcut.isEmpty ? UnsafePointer(dy) : UnsafePointer(shortcutInputGradient.pointer)
    for i in 0..<inputCount { dx[i] += other[i] }
    StepProfile.current?.lap(.elementwise)
  }

  private func back(
    _ layers: [Layer], outputs: [UnsafeMutablePointer<Float>], gradients: [UnsafeMutablePointer<Float>],
    x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, batch: Int, gradientsReady: (Range<Int>) -> Void
  ) {
    let profile = StepProfile.current
    for index in layers.indices.reversed() {
      let input = index == 0 ? x : UnsafePointer(outputs[index - 1])
      let inputGradient = index == 0 ? dx : gradients[index - 1]
      let mark = profile?.mark()
      layers[index].backward(
        x: input, y: UnsafePointer(outputs[index]), dy: gradients[index], dx: inputGradient, batch: batch,
        rangeElements: .max, gradientsReady: gradientsReady)
      if let mark { profile?.chargeNested(layers[index], backward: true, since: mark) }
    }
  }

  /// The inner convolutions' im2col GEMMs.
  public func columnFormulation(batch: Int, inputGradient: Bool) -> [StepProfile.GEMMSite] {
    namedLayers.flatMap { $0.layer.columnFormulation(batch: batch, inputGradient: true) }
  }
}
