import Diagnostics

/// One layer of a model, as `--model seq:...` writes it; sizes that follow from the input (in-features,
/// in-channels) are left out and worked out by `ModelSpec`.
public enum LayerSpec: Equatable, Sendable {
  /// `linear<out>`: nn.Linear(in, out); an input of any shape is flattened.
  case linear(outFeatures: Int)
  /// `relu`.
  case relu
  /// `flatten`: [c, h, w] → [c·h·w].
  case flatten
  /// `conv<out>k<k>[s<stride>][p<padding>]`: nn.Conv2d(in, out, k, stride, padding); stride 1, padding 0 unless given.
  case conv2d(outChannels: Int, kernel: Int, stride: Int, padding: Int)
  /// `pool<k>[s<stride>]`: nn.MaxPool2d(k, stride); the stride is k unless given.
  case maxPool2d(kernel: Int, stride: Int)
  /// `bn`: nn.BatchNorm2d(c) on an image [c, h, w], nn.BatchNorm1d(n) on features [n].
  case batchNorm
  /// `gap`: global average pooling, [c, h, w] → [c] (nn.AdaptiveAvgPool2d(1) and nn.Flatten()).
  case globalAveragePool
  /// `dropout<P>`: nn.Dropout(P), P a decimal in [0, 1) (`dropout0.25`): training only, any input.
  case dropout(probability: Double)
  /// `res(T1,T2,...)`: a residual block, y = body(x) + shortcut(x), the body being the tokens inside (convolutions,
  /// batch norms and ReLUs), the shortcut the identity or, when the body changes the shape, a 1×1 convolution of
  /// the body's stride and a batch norm (`ResidualBlock`).
  indirect case residual(body: [LayerSpec])

  /// The token that parses back to this layer (the shortest form).
  public var token: String {
    switch self {
    case .linear(let out): return "linear\(out)"
    case .relu: return "relu"
    case .flatten: return "flatten"
    case .conv2d(let out, let kernel, let stride, let padding):
      return "conv\(out)k\(kernel)" + (stride == 1 ? "" : "s\(stride)") + (padding == 0 ? "" : "p\(padding)")
    case .maxPool2d(let kernel, let stride): return "pool\(kernel)" + (stride == kernel ? "" : "s\(stride)")
    case .batchNorm: return "bn"
    case .globalAveragePool: return "gap"
    case .dropout(let probability): return "dropout\(probability)"
    case .residual(let body): return "res(" + body.map(\.token).joined(separator: ",") + ")"
    }
  }

  /// Parses one token of a `seq:` spec; nil when it is not one.
  public init?(token: Substring) {
    let text = token.lowercased()
    if text.hasPrefix("res("), text.hasSuffix(")") {
      let inner = text.dropFirst(4).dropLast()
      guard !inner.isEmpty, let parts = Self.splitTopLevel(inner) else { return nil }
      var body: [LayerSpec] = []
      for part in parts {
        guard let layer = LayerSpec(token: part) else { return nil }
        body.append(layer)
      }
      self = .residual(body: body)
    } else if text == "relu" {
      self = .relu
    } else if text == "flatten" {
      self = .flatten
    } else if text == "bn" {
      self = .batchNorm
    } else if text == "gap" {
      self = .globalAveragePool
    } else if text.hasPrefix("dropout"), let probability = Double(text.dropFirst(7)),
      text.dropFirst(7).allSatisfy({ $0.isNumber || $0 == "." })
    {
      self = .dropout(probability: probability)
    } else if let out = Self.fields(text, prefix: "linear", letters: [])?[""] {
      self = .linear(outFeatures: out)
    } else if let fields = Self.fields(text, prefix: "conv", letters: ["k", "s", "p"]), let out = fields[""],
      let kernel = fields["k"]
    {
      self = .conv2d(outChannels: out, kernel: kernel, stride: fields["s"] ?? 1, padding: fields["p"] ?? 0)
    } else if let fields = Self.fields(text, prefix: "pool", letters: ["s"]), let kernel = fields[""] {
      self = .maxPool2d(kernel: kernel, stride: fields["s"] ?? kernel)
    } else {
      return nil
    }
  }

  /// A comma list split at its top level: commas inside parentheses belong to a `res(...)` token. Nil when the
  /// parentheses do not balance.
  static func splitTopLevel(_ text: Substring) -> [Substring]? {
    var parts: [Substring] = []
    var depth = 0
    var start = text.startIndex
    for index in text.indices {
      switch text[index] {
      case "(": depth += 1
      case ")":
        depth -= 1
        if depth < 0 { return nil }
      case "," where depth == 0:
        parts.append(text[start..<index])
        start = text.index(after: index)
      default: break
      }
    }
    guard depth == 0 else { return nil }
    parts.append(text[start...])
    return parts
  }

  /// "conv32k3p1" with prefix "conv" and letters k, s, p → ["": 32, "k": 3, "p": 1]: a number after the prefix,
  /// then each letter at most once, in the given order, followed by a number. Nil if anything else is there.
  private static func fields(_ text: String, prefix: String, letters: [Character]) -> [String: Int]? {
    guard text.hasPrefix(prefix) else { return nil }
    var rest = Substring(text.dropFirst(prefix.count))
    var result: [String: Int] = [:]
    var key = ""
    var allowed = letters[...]
    while true {
      let digits = rest.prefix { $0.isASCII && $0.isNumber }
      guard !digits.isEmpty, digits.count <= 6, let value = Int(digits), value > 0 || key == "p" else { return nil }
      result[key] = value
      rest = rest.dropFirst(digits.count)
      guard let letter = rest.first else { return result }
      guard let position = allowed.firstIndex(of: letter) else { return nil }
      allowed = allowed[(position + 1)...]
      key = String(letter)
      rest = rest.dropFirst()
    }
  }
}

/// The architecture of a model: the shape of one input sample and the sequence of layers, as
/// `torch.nn.Sequential` would hold them. Shapes are checked when the spec is made, so a spec always builds.
///
/// `--model` names one of three families:
/// - `mlp` (784-256-128-10: Linear, ReLU, Linear, ReLU, Linear) or `mlp:H1,H2,...` (the hidden widths);
/// - `cnn`: the default convolutional network, `Self.defaultCNNLayers`;
/// - `resnet`: a ResNet-20 for small images, `Self.resNetLayers`;
/// - `seq:T1,T2,...`: any sequence of `LayerSpec` tokens, e.g. `seq:conv16k5p2,relu,pool2,flatten,linear10`.
///
/// A model whose first layer is Linear takes its samples flattened (inputShape [c·h·w]), as the MLP always has;
/// one that starts with a convolution, pooling or Flatten takes them as images [c, h, w].
public struct ModelSpec: Equatable, Sendable, CustomStringConvertible {
  /// One sample's shape as the first layer sees it: [features] or [channels, height, width].
  public let inputShape: [Int]
  public let layers: [LayerSpec]
  /// outputShapes[i]: layer i's output for one sample; the last is [classCount].
  public let outputShapes: [[Int]]

  /// The hidden widths of the bare `--model mlp`.
  public static let defaultHiddenSizes = [256, 128]

  /// `--model cnn`: two 3×3 convolutions (32 and 64 channels, padding 1) each followed by ReLU and 2×2 max
  /// pooling, then Linear 128, ReLU, and the classifier (421,642 parameters on 28×28 images with 10 classes).
  public static func defaultCNNLayers(classCount: Int) -> [LayerSpec] {
    [
      .conv2d(outChannels: 32, kernel: 3, stride: 1, padding: 1), .relu, .maxPool2d(kernel: 2, stride: 2),
      .conv2d(outChannels: 64, kernel: 3, stride: 1, padding: 1), .relu, .maxPool2d(kernel: 2, stride: 2),
      .flatten, .linear(outFeatures: 128), .relu, .linear(outFeatures: classCount),
    ]
  }

  /// `--model resnet`: ResNet-20's layout (He et al. 2016, for 32×32 images; here any [c, h, w]): a 3×3
  /// convolution to 16 channels with batch norm and ReLU, three stages of three basic blocks at 16, 32 and 64
  /// channels (each block conv-bn-relu-conv-bn plus its shortcut, then ReLU; the first block of stages 2 and 3
  /// halves the size with stride 2 and a 1×1 convolution shortcut), global average pooling and the classifier.
  /// 272,970 parameters on 28×28 images with 10 classes (its convolutions have biases, as all of ddp-train's do).
  public static func resNetLayers(classCount: Int) -> [LayerSpec] {
    var layers: [LayerSpec] = [.conv2d(outChannels: 16, kernel: 3, stride: 1, padding: 1), .batchNorm, .relu]
    for (stage, channels) in [16, 32, 64].enumerated() {
      for block in 0..<3 {
        let stride = stage > 0 && block == 0 ? 2 : 1
        layers += [
          .residual(body: [
            .conv2d(outChannels: channels, kernel: 3, stride: stride, padding: 1), .batchNorm, .relu,
            .conv2d(outChannels: channels, kernel: 3, stride: 1, padding: 1), .batchNorm,
          ]),
          .relu,
        ]
      }
    }
    return layers + [.globalAveragePool, .linear(outFeatures: classCount)]
  }

  /// Checks the layers against the input, one by one. The error names the first layer that does not fit.
  public init(inputShape: [Int], layers: [LayerSpec], given: String? = nil) throws(ModelSpecError) {
    precondition(!inputShape.isEmpty && inputShape.allSatisfy { $0 > 0 }, "input shape must be positive")
    let given = given ?? "seq:" + layers.map(\.token).joined(separator: ",")
    func fail(_ index: Int, _ problem: String) -> ModelSpecError {
      ModelSpecError(given: given, problem: "layer \(index) '\(layers[index].token)' \(problem)")
    }
    guard !layers.isEmpty else { throw ModelSpecError(given: given, problem: "there are no layers") }
    var shape = inputShape
    var shapes: [[Int]] = []
    for (index, layer) in layers.enumerated() {
      do {
        shape = try Self.outputShape(of: layer, input: shape)
      } catch {
        throw fail(index, error.problem)
      }
      shapes.append(shape)
    }
    guard case .linear = layers.last, shape.count == 1 else {
      throw ModelSpecError(
        given: given, problem: "the last layer must be a linear one giving one value per class (e.g. 'linear10')")
    }
    self.inputShape = inputShape
    self.layers = layers
    outputShapes = shapes
  }

  /// Why a layer does not fit its input, in words after its name ("has padding 3, expected less than the kernel").
  struct ShapeProblem: Error {
    var problem: String
  }

  /// One layer's output shape for one sample of shape `input`; throws what does not fit.
  static func outputShape(of layer: LayerSpec, input shape: [Int]) throws(ShapeProblem) -> [Int] {
    func fail(_ problem: String) -> ShapeProblem { ShapeProblem(problem: problem) }
    let image = "needs an image [channels, height, width] as input, found \(shape.shapeText)"
    switch layer {
    case .linear(let out):
      return [out]
    case .relu, .batchNorm:
      return shape
    case .dropout(let probability):
      guard probability >= 0 && probability < 1 else {
        throw fail("has probability \(probability), expected one in [0, 1) (e.g. dropout0.25)")
      }
      return shape
    case .flatten:
      return [shape.reduce(1, *)]
    case .conv2d(let out, let kernel, let stride, let padding):
      guard shape.count == 3 else { throw fail(image) }
      guard padding < kernel else { throw fail("has padding \(padding), expected less than the kernel") }
      guard let height = Conv2d.outputSide(input: shape[1], kernel: kernel, stride: stride, padding: padding),
        let width = Conv2d.outputSide(input: shape[2], kernel: kernel, stride: stride, padding: padding)
      else {
        throw fail("has a \(kernel)x\(kernel) kernel larger than its padded input \(shape.shapeText)")
      }
      return [out, height, width]
    case .globalAveragePool:
      guard shape.count == 3 else { throw fail(image) }
      return [shape[0]]
    case .maxPool2d(let kernel, let stride):
      guard shape.count == 3 else { throw fail(image) }
      guard shape[1] >= kernel, shape[2] >= kernel else {
        throw fail("has a \(kernel)x\(kernel) window larger than its input \(shape.shapeText)")
      }
      return [shape[0], (shape[1] - kernel) / stride + 1, (shape[2] - kernel) / stride + 1]
    case .residual(let body):
      guard shape.count == 3 else { throw fail(image) }
      var inner = shape
      for (index, layer) in body.enumerated() {
        switch layer {
        case .conv2d, .batchNorm, .relu: break
        default:
          throw fail("holds '\(layer.token)' (layer \(index) of the block): a block's body takes conv, bn and relu")
        }
        do {
          inner = try outputShape(of: layer, input: inner)
        } catch {
          throw fail("has layer \(index) of its body '\(layer.token)' that \(error.problem)")
        }
      }
      guard inner == shape || ResidualBlock.shortcutStride(from: shape, to: inner) != nil else {
        throw fail(
          "turns \(shape.shapeText) into \(inner.shapeText), which no 1x1 strided convolution shortcut gives (the "
            + "body must keep the size or divide it by its stride, as a ResNet block does)")
      }
      return inner
    }
  }

  /// An MLP with these widths [input, hidden..., classes]: Linear and ReLU alternating, no ReLU at the end.
  public init(layerSizes: [Int]) {
    precondition(layerSizes.count >= 2, "ModelSpec needs an input and a class count, got \(layerSizes)")
    precondition(layerSizes.allSatisfy { $0 > 0 }, "ModelSpec layer sizes must be positive, got \(layerSizes)")
    var layers: [LayerSpec] = []
    for (index, size) in layerSizes.dropFirst().enumerated() {
      if index > 0 { layers.append(.relu) }
      layers.append(.linear(outFeatures: size))
    }
    // Cannot fail: Linear layers fit any input.
    self = try! ModelSpec(inputShape: [layerSizes[0]], layers: layers)
  }

  /// Parses a `--model` value for samples of `sampleShape` ([c, h, w], or [features] for data without an image
  /// shape) and `classCount` classes.
  public init(parsing text: String, sampleShape: [Int], classCount: Int) throws(ModelSpecError) {
    precondition(!sampleShape.isEmpty && classCount > 0, "dataset sizes must be positive")
    let features = sampleShape.reduce(1, *)
    let family = try Self.family(of: text)
    switch family {
    case .mlp(let hidden):
      self.init(layerSizes: [features] + (hidden ?? Self.defaultHiddenSizes) + [classCount])
    case .cnn, .resnet:
      let preset = family == .cnn ? "cnn" : "resnet"
      guard sampleShape.count == 3 else {
        throw ModelSpecError(
          given: text,
          problem: "the \(preset) needs image samples [channels, height, width], the data has \(features) "
            + "features without an image shape")
      }
      let layers =
        family == .cnn ? Self.defaultCNNLayers(classCount: classCount) : Self.resNetLayers(classCount: classCount)
      try self.init(inputShape: sampleShape, layers: layers, given: text)
    case .sequence(let layers):
      let flat: Bool
      if case .linear = layers.first { flat = true } else { flat = false }
      try self.init(inputShape: flat ? [features] : sampleShape, layers: layers, given: text)
      guard outputShapes.last == [classCount] else {
        throw ModelSpecError(
          given: text,
          problem: "the last layer '\(layers.last!.token)' gives \(outputShapes.last![0]) values, but the data "
            + "has \(classCount) classes")
      }
    }
  }

  /// Parses a `--model` value for a flat input of `inputSize` features.
  public init(parsing text: String, inputSize: Int, classCount: Int) throws(ModelSpecError) {
    try self.init(parsing: text, sampleShape: [inputSize], classCount: classCount)
  }

  /// What a `--model` value names, before any shape is known.
  enum Family: Equatable {
    /// The hidden widths, nil for the default.
    case mlp(hidden: [Int]?)
    case cnn
    case resnet
    case sequence([LayerSpec])
  }

  /// Checks the text of a `--model` value (the syntax only; shapes need the data). Throws ModelSpecError.
  public static func checkSyntax(_ text: String) throws(ModelSpecError) { _ = try family(of: text) }

  static func family(of text: String) throws(ModelSpecError) -> Family {
    let trimmed = text.filter { $0 != " " }
    let (family, argument): (Substring, Substring?)
    if let colon = trimmed.firstIndex(of: ":") {
      (family, argument) = (trimmed[..<colon], trimmed[trimmed.index(after: colon)...])
    } else {
      (family, argument) = (trimmed[...], nil)
    }
    switch family.lowercased() {
    case "mlp":
      guard let argument else { return .mlp(hidden: nil) }
      var hidden: [Int] = []
      if !argument.isEmpty {
        for item in argument.split(separator: ",", omittingEmptySubsequences: false) {
          guard let size = Int(item) else {
            let shown = item.isEmpty ? "an empty entry" : "'\(item)'"
            throw ModelSpecError(given: text, problem: "\(shown) is not a whole number")
          }
          guard size > 0 else { throw ModelSpecError(given: text, problem: "hidden size \(size) must be positive") }
          hidden.append(size)
        }
      }
      return .mlp(hidden: hidden)
    case "cnn":
      guard argument == nil else { throw ModelSpecError(given: text, problem: "'cnn' takes no arguments") }
      return .cnn
    case "resnet":
      guard argument == nil else { throw ModelSpecError(given: text, problem: "'resnet' takes no arguments") }
      return .resnet
    case "seq":
      guard let argument, !argument.isEmpty else {
        throw ModelSpecError(given: text, problem: "'seq:' needs a list of layers")
      }
      var layers: [LayerSpec] = []
      guard let tokens = LayerSpec.splitTopLevel(argument) else {
        throw ModelSpecError(given: text, problem: "its parentheses do not balance")
      }
      for token in tokens {
        guard let layer = LayerSpec(token: token) else {
          let shown = token.isEmpty ? "an empty entry" : "'\(token)'"
          throw ModelSpecError(given: text, problem: "\(shown) is not a layer")
        }
        layers.append(layer)
      }
      return .sequence(layers)
    default:
      throw ModelSpecError(given: text, problem: "unknown model '\(family)'")
    }
  }

  /// The MLP widths [input, hidden..., classes] when this is an MLP (flat input, Linear and ReLU alternating,
  /// starting and ending with Linear); nil for any other network.
  public var layerSizes: [Int]? {
    guard inputShape.count == 1 else { return nil }
    var sizes = inputShape
    for (index, layer) in layers.enumerated() {
      switch (index % 2, layer) {
      case (0, .linear(let out)): sizes.append(out)
      case (1, .relu): continue
      default: return nil
      }
    }
    return layers.count % 2 == 1 ? sizes : nil
  }

  /// Whether this is `--model cnn` for its input and classes.
  var isDefaultCNN: Bool {
    inputShape.count == 3 && layers == Self.defaultCNNLayers(classCount: classCount)
  }

  /// Whether this is `--model resnet` for its input and classes.
  var isResNet: Bool {
    inputShape.count == 3 && layers == Self.resNetLayers(classCount: classCount)
  }

  /// The `--model` value that parses back to this spec (given the same data): "mlp:256,128" ("mlp:" without
  /// hidden layers), "cnn", "resnet", or "seq:...".
  public var name: String {
    if let sizes = layerSizes { return "mlp:" + sizes.dropFirst().dropLast().map(String.init).joined(separator: ",") }
    if isDefaultCNN { return "cnn" }
    if isResNet { return "resnet" }
    return "seq:" + layers.map(\.token).joined(separator: ",")
  }

  /// "mlp 784-256-128-10", "cnn conv32k3p1,relu,... on 1x28x28", "seq:... on 1x28x28".
  public var description: String {
    if let sizes = layerSizes { return "mlp " + sizes.map(String.init).joined(separator: "-") }
    let tokens = layers.map(\.token).joined(separator: ",")
    return (isDefaultCNN ? "cnn " : isResNet ? "resnet " : "seq:") + tokens + " on " + inputShape.shapeText
  }

  public var classCount: Int { outputShapes[outputShapes.count - 1][0] }
  /// Elements of one input sample.
  public var inputSize: Int { inputShape.reduce(1, *) }
  /// The shape each layer receives: inputShape, then every layer's output but the last.
  public var inputShapes: [[Int]] { [inputShape] + outputShapes.dropLast() }

  /// Samples per forward pass when only evaluating (test loss, `eval`, `predict`): 500, or fewer where the
  /// activations of 500 samples would pass 2²¹ floats (8 MB), counting every layer's output (in-place ones too, an
  /// upper bound), at least 1. The activations are held for the model's largest batch, so this bounds a rank's
  /// memory: the default CNN counts ~88,000 floats per sample (23 samples), and its 500-sample evaluation held
  /// 113 MB of activations and pooling argmax per rank. The MLP keeps 500.
  public var evaluationBatch: Int {
    let activations = outputShapes.reduce(0) { $0 + $1.reduce(1, *) }
    return max(1, min(500, (1 << 21) / max(activations, 1)))
  }

  /// Σ over Linear, Conv2d and batch-norm layers (in blocks too) of weight and bias sizes.
  public var parameterCount: Int { Self.counts(layers, input: inputShape).parameters }

  /// Floats of batch statistics one micro-batch's forward produces: the mean and the unbiased variance of each
  /// channel of every batch-norm layer (`BatchNorm.batchStatistics`), in blocks too, in layer order.
  public var batchStatisticsCount: Int { Self.counts(layers, input: inputShape).statistics }

  /// Parameters and batch statistics of `layers` on inputs of shape `input` (the layers fit: a checked spec's).
  static func counts(_ layers: [LayerSpec], input: [Int]) -> (parameters: Int, statistics: Int) {
    var shape = input
    var total = (parameters: 0, statistics: 0)
    for layer in layers {
      switch layer {
      case .linear(let out): total.parameters += out * shape.reduce(1, *) + out
      case .conv2d(let out, let kernel, _, _): total.parameters += out * shape[0] * kernel * kernel + out
      case .batchNorm:
        total.parameters += 2 * shape[0]
        total.statistics += 2 * shape[0]
      case .residual(let body):
        let inner = counts(body, input: shape)
        total.parameters += inner.parameters
        total.statistics += inner.statistics
        let output = try! outputShape(of: layer, input: shape)
        if output != shape {
          // The shortcut: a 1×1 convolution (with its bias) and a batch norm.
          total.parameters += output[0] * shape[0] + output[0] + 2 * output[0]
          total.statistics += 2 * output[0]
        }
      default: break
      }
      shape = try! outputShape(of: layer, input: shape)
    }
    return total
  }

  /// The network as a Python expression over `torch.nn` (the checkpoint metadata), using the classes of
  /// `moduleDefinitions`.
  public var torchExpression: String {
    "torch.nn.Sequential("
      + Sequential.makeLayers(self, maxBatch: 1).map(\.torchExpression).joined(separator: ", ")
      + ")"
  }

  /// Python source defining the modules `torchExpression` uses beyond `torch.nn` (the checkpoint's
  /// `ddp_train.modules`), or "" when it uses none: `Residual(body, shortcut)` for `res(...)`, whose state_dict
  /// names its branches `body.*` and `shortcut.*`, and `FlatLinear` for a linear layer on an image, which flattens
  /// it first and keeps Linear's `weight` and `bias`.
  public var moduleDefinitions: String {
    let expression = torchExpression
    var source: [String] = []
    if expression.contains("Residual(") {
      source.append(
        """
        class Residual(torch.nn.Module):
            def __init__(self, body, shortcut=None):
                super().__init__()
                self.body = body
                self.shortcut = shortcut if shortcut is not None else torch.nn.Identity()

            def forward(self, x):
                return self.body(x) + self.shortcut(x)
        """)
    }
    if expression.contains("FlatLinear(") {
      source.append(
        """
        class FlatLinear(torch.nn.Linear):
            def forward(self, x):
                return super().forward(x.flatten(1))
        """)
    }
    return source.joined(separator: "\n\n")
  }
}

extension ModelSpec: Codable {
  /// state.json: an MLP as `{"layer_sizes": [...]}` (the format checkpoints have always had), any other network
  /// as `{"layers": "seq:...", "input_shape": [c, h, w]}`.
  /// Written in snake case by the checkpoint's encoder (layer_sizes, input_shape).
  private enum CodingKeys: String, CodingKey {
    case layerSizes, layers, inputShape
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    if let sizes = try container.decodeIfPresent([Int].self, forKey: .layerSizes) {
      guard sizes.count >= 2, sizes.allSatisfy({ $0 > 0 }) else {
        throw DecodingError.dataCorruptedError(
          forKey: .layerSizes, in: container, debugDescription: "expected at least two positive sizes")
      }
      self.init(layerSizes: sizes)
      return
    }
    let text = try container.decode(String.self, forKey: .layers)
    let shape = try container.decode([Int].self, forKey: .inputShape)
    guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }), case .sequence(let layers)? = try? Self.family(of: text)
    else {
      throw DecodingError.dataCorruptedError(
        forKey: .layers, in: container, debugDescription: "expected 'seq:' layers and a positive input shape")
    }
    do {
      try self.init(inputShape: shape, layers: layers)
    } catch {
      throw DecodingError.dataCorruptedError(forKey: .layers, in: container, debugDescription: error.description)
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    if let sizes = layerSizes {
      try container.encode(sizes, forKey: .layerSizes)
    } else {
      try container.encode("seq:" + layers.map(\.token).joined(separator: ","), forKey: .layers)
      try container.encode(inputShape, forKey: .inputShape)
    }
  }
}

/// A `--model` value that does not parse or does not fit the data; the message says what was given and what
/// is expected.
public struct ModelSpecError: InputError, Equatable, Sendable {
  /// The text passed to `--model`.
  public var given: String
  /// What is wrong with it.
  public var problem: String

  public init(given: String, problem: String) {
    self.given = given
    self.problem = problem
  }

  public var description: String {
    "invalid --model '\(given)': \(problem). Expected 'mlp' (hidden layers 256,128), 'mlp:H1,H2,...', 'cnn', 'resnet', or "
      + "'seq:' and layers from linearN, relu, flatten, convNkK[sS][pP], poolK[sS], bn, gap, dropoutP, res(...), "
      + "e.g. 'seq:conv16k5p2,relu,pool2,flatten,linear10'."
  }
}
