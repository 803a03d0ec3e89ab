import Tensors

/// One stage of a `Sequential` model: a forward/backward pair over pointers, for a batch of samples laid out
/// back to back (sample b starts at b·inputShape.product), shapes per sample in PyTorch's order (NCHW without
/// the N).
///
/// A layer is built for one input shape. It declares its parameter tensors, and the container lays them out in the
/// model's flat buffers and hands the layer its pointers (`bind`). Any scratch a layer needs (im2col columns,
/// pooling argmax) it allocates at construction for `maxBatch` samples, so a training step allocates nothing.
/// The container owns the activations between layers and their gradients.
///
/// Note [Gradients accumulate]: `backward` ADDS its parameters' gradients into the flat gradient buffer (as
/// PyTorch's `.grad` does), so micro-batches accumulate; the input gradient `dx` it overwrites.
public protocol Layer: AnyObject {
  /// The module as PyTorch writes it, e.g. "torch.nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1)".
  var torchExpression: String { get }
  /// One sample's input and output shapes, e.g. [1, 28, 28] → [32, 28, 28].
  var inputShape: [Int] { get }
  var outputShape: [Int] { get }
  /// The parameter tensors in state_dict order, named by suffix ("weight", "bias"); empty for ReLU and the like.
  var parameterShapes: [(suffix: String, shape: [Int])] { get }
  /// Float buffers that are state but not parameters (a batch norm's running statistics), in state_dict order
  /// after the parameters; empty for most layers (the default).
  var bufferShapes: [(suffix: String, shape: [Int])] { get }
  /// The batch norms this layer is or holds, with their paths inside it ("" for itself; the default).
  var batchNormsInside: [(path: String, layer: BatchNorm)] { get }
  /// How the output relates to the input's memory: its own buffer, written over the input (ReLU), or the
  /// input itself, unchanged (Flatten).
  var storage: LayerStorage { get }

  /// Where the layer's parameters and their gradients start (nil when it has none), and its position in the
  /// model (the state_dict prefix, for the profile's GEMM site names). Called once, before anything else runs.
  func bind(parameters: UnsafeMutablePointer<Float>?, gradients: UnsafeMutablePointer<Float>?, offset: Int, index: Int)
  /// Where the layer's buffers start in the model's buffer array (nil when it has none). Called once, after `bind`.
  func bindBuffers(_ buffers: UnsafeMutablePointer<Float>?)
  /// PyTorch's default initialisation for the module, drawn from `generator` in state_dict order.
  func initializeParameters(using generator: inout Xoshiro256)
  /// y = layer(x) for `batch` samples. x: [batch, inputShape]; y: [batch, outputShape] (y == x when
  /// `storage` is not `.own`).
  func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int)
  /// Given dy = ∂L/∂y, adds the parameters' gradients (Note [Gradients accumulate]) and writes dx = ∂L/∂x when
  /// `dx` is non-nil (nil for the first layer, whose input needs no gradient). x and y are what `forward` saw
  /// and produced for this batch; dx == dy when `storage` is not `.own`.
  ///
  /// `gradientsReady` is called with each range of the flat gradient buffer (absolute offsets) as soon as it is
  /// final for this call: descending, adjacent, covering the layer's parameters once; weights of more than
  /// `rangeElements` may be reported in row blocks (see `Sequential.accumulateGradients`).
  func backward(
    x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, rangeElements: Int, gradientsReady: (Range<Int>) -> Void)
  /// The GEMMs a step over `batch` samples would make in the im2col formulation (dx's only when
  /// `inputGradient`), with their calls: what `ddp-train bench` counts as the layer's arithmetic, whichever
  /// method it runs. None for layers without GEMMs (the default).
  func columnFormulation(batch: Int, inputGradient: Bool) -> [StepProfile.GEMMSite]
}

/// Where a layer's output lives (see `Layer.storage`).
public enum LayerStorage: Sendable {
  /// A buffer of its own, [maxBatch, outputShape].
  case own
  /// Over its input (same element count): the container gives it the input's buffer, and its gradient the
  /// output gradient's. Not for the model's first layer, whose input belongs to the caller.
  case inPlace
  /// The input buffer unchanged (a reshape): nothing is written.
  case view
}

extension Layer {
  public func columnFormulation(batch: Int, inputGradient: Bool) -> [StepProfile.GEMMSite] { [] }
  public var bufferShapes: [(suffix: String, shape: [Int])] { [] }
  /// The batch norms this layer is or holds, each with its path inside the layer ("" for itself, "body.1" in a
  /// residual block).
  public var batchNormsInside: [(path: String, layer: BatchNorm)] {
    (self as? BatchNorm).map { [("", $0)] } ?? []
  }
  public func bindBuffers(_ buffers: UnsafeMutablePointer<Float>?) {}
  /// Elements of all buffer tensors.
  public var bufferCount: Int { bufferShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }
  /// Elements of one input and one output sample.
  public var inputCount: Int { inputShape.reduce(1, *) }
  public var outputCount: Int { outputShape.reduce(1, *) }
  /// Elements of all parameter tensors.
  public var parameterCount: Int { parameterShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }
}

extension Array where Element == Int {
  /// "1x28x28".
  var shapeText: String { map(String.init).joined(separator: "x") }
}

/// PyTorch's default initialisation of nn.Linear and nn.Conv2d (kaiming_uniform with a = √5 for the weight, and
/// the bias rule): every weight and bias ~ U(−1/√fan_in, 1/√fan_in), weight first, row-major.
func initializeUniformByFanIn(
  _ parameters: UnsafeMutablePointer<Float>, count: Int, fanIn: Int, using generator: inout Xoshiro256
) {
  let bound = Float(1 / Double(fanIn).squareRoot())
  for i in 0..<count { parameters[i] = generator.nextFloat(in: -bound, bound) }
}
