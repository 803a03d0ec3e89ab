import Tensors

/// nn.Dropout(p): in training y = x·m/(1 − p), each mask element m ∈ {0, 1} kept with probability 1 − p; in
/// evaluation y = x. Any shape, y the shape of x; in place over its input where the container allows.
///
/// Randomness follows the sample, not the rank: mask element e of the sample at position q of step t's global
/// batch (q in 0..<K·B·M, as the data order numbers it) in the model's d-th dropout layer is a pure function of
/// (seed, t, d, q, e) (`keeps`). K workers with batch B therefore drop what one process with batch K·B drops, and a
/// resumed run what an uninterrupted one drops. The mask is never stored: the backward draws it again.
///
/// The draw: a SplitMix64 output keyed by (seed, t, d, q) gives the sample's key; element e keeps when the upper 32
/// bits of SplitMix64's finaliser of key + e·φ (φ its golden-ratio increment) are ≥ ⌊p·2³²⌉, so each element is
/// dropped with probability p to within 2⁻³². The scale 1/(1 − p) is a float, as PyTorch's noise.div_(1 − p).
public final class Dropout: Layer {
  public let inputShape: [Int]
  public let probability: Double
  /// The mask (training) or the identity (evaluation); set by `Sequential`.
  var training = true
  /// Which dropout layer of the model this is, d (set by `Sequential`, in model order).
  var ordinal = 0
  /// Where the current micro-batch's samples sit (set by `Sequential.setSamplePositions`).
  var positions = SamplePositions()
  private let threshold: UInt64
  private let scale: Float

  public init(inputShape: [Int], probability: Double) {
    precondition(probability >= 0 && probability < 1, "dropout probability must be in [0, 1)")
    self.inputShape = inputShape
    self.probability = probability
    threshold = UInt64((probability * 4_294_967_296).rounded())
    scale = 1 / Float(1 - probability)
  }

  public var outputShape: [Int] { inputShape }
  public var storage: LayerStorage { .inPlace }
  public var parameterShapes: [(suffix: String, shape: [Int])] { [] }
  public var torchExpression: String { "torch.nn.Dropout(p=\(probability))" }
  public func bind(
    parameters: UnsafeMutablePointer<Float>?, gradients: UnsafeMutablePointer<Float>?, offset: Int, index: Int
  ) {}
  public func initializeParameters(using generator: inout Xoshiro256) {}

  /// Sample slot b's key: SplitMix64 keyed by (seed, step, this layer's ordinal, its position in the global batch).
  @inline(__always)
  func sampleKey(slot: Int) -> UInt64 {
    let position = UInt64(positions.first + positions.stride * slot)
    var mixer = SplitMix64(
      state: positions.seed ^ (RandomStream.dropout &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(positions.step) << 24)
        ^ (UInt64(ordinal) << 56) ^ position)
    return mixer.next()
  }

  /// Whether element e of the sample with key `key` is kept.
  @inline(__always)
  static func keeps(key: UInt64, element: Int, threshold: UInt64) -> Bool {
    var z = key &+ UInt64(truncatingIfNeeded: element) &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z = z ^ (z >> 31)
    return (z >> 32) >= threshold
  }

  /// out = input·m·scale for every sample of the batch (out may equal input).
  private func applyMask(_ input: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, batch: Int) {
    let n = inputCount
    for b in 0..<batch {
      let key = sampleKey(slot: b)
      let (x, y) = (input + b * n, out + b * n)
      var e = 0
      while e < n {
        y[e] = Self.keeps(key: key, element: e, threshold: threshold) ? x[e] * scale : 0
        e = e &+ 1
      }
    }
  }

  public func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
    if training && probability > 0 {
      applyMask(x, y, batch: batch)
    } else if UnsafePointer(y) != x {
      y.update(from: x, count: batch * inputCount)
    }
    StepProfile.current?.lap(.elementwise)
  }

  /// dx = dy·m/(1 − p) with the forward's mask, drawn again (dx may equal dy).
  public func backward(
    x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, rangeElements: Int, gradientsReady: (Range<Int>) -> Void
  ) {
    guard let dx else { return }
    if probability > 0 {
      applyMask(UnsafePointer(dy), dx, batch: batch)
    } else if dx != dy {
      dx.update(from: dy, count: batch * inputCount)
    }
    StepProfile.current?.lap(.elementwise)
  }
}

/// Where the samples of a training micro-batch sit, for the layers that draw per sample (`Dropout`): slot b is
/// position `first + stride·b` of optimizer step `step`'s global batch, in a run of seed `seed`.
public struct SamplePositions: Sendable, Equatable {
  public var seed: UInt64 = 0
  public var step = 0
  public var first = 0
  public var stride = 1

  public init(seed: UInt64 = 0, step: Int = 0, first: Int = 0, stride: Int = 1) {
    (self.seed, self.step, self.first, self.stride) = (seed, step, first, stride)
  }
}
