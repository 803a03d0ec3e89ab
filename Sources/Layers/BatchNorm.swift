import CKernels
import Tensors

/// nn.BatchNorm2d(c) on [c, h, w] samples, nn.BatchNorm1d(n) on [n] samples (ε = 1e-5, momentum 0.1, affine,
/// tracking running statistics), with PyTorch's arithmetic.
///
/// Shapes per sample: x [c, h, w] → y [c, h, w] (or [n] → [n]; then c = n and the pixels are 1). Parameters:
/// weight γ [c] (starts at 1), bias β [c] (starts at 0). Buffers (`bufferShapes`, in the model's buffer array):
/// running_mean [c] (starts at 0), running_var [c] (starts at 1), and num_batches_tracked, an int64 count.
///
/// Training (`training`), per channel over the N = batch·pixels values it normalises (over every rank's samples
/// when `synchronizer` is set: `--batch-norm sync`):
///   mean = Σx / N,  var = Σx² / N − mean²  (biased; the sums in double),  invstd = 1/√(var + ε)
///   y = (x − mean)·γ·invstd + β
///   backward:  dγ += Σ dy·x̂,  dβ += Σ dy  (this rank's samples: the gradient all-reduce sums the ranks)
///              dx = γ·invstd·(dy − Σdy/N − x̂·Σ(dy·x̂)/N)   with x̂ = (x − mean)·invstd, sums over the N values
/// Evaluation: y = (x − running_mean)·γ/√(running_var + ε) + β.
///
/// The running statistics are not updated by the forward: the trainer calls `updateRunningStatistics` after each
/// step's gradient sum with the batch statistics it carried (`batchStatistics`: the mean and the unbiased
/// variance, Σ(x − mean)²/(N − 1)), averaged over the ranks, so every rank holds the same running statistics at
/// every step (docs/INTERFACE.md, "Batch normalisation"). A single process updates them with its own.
public final class BatchNorm: Layer {
  public let inputShape: [Int]
  /// c (or n).
  public let channels: Int
  /// h·w (or 1).
  public let pixels: Int
  public static let epsilon = 1e-5
  public static let momentum: Float = 0.1

  /// Batch statistics (training) or running statistics (evaluation); set by `Sequential`.
  var training = true
  /// y = max(·, 0) (set by `Sequential` when a ReLU follows in place).
  var appliesReLU = false
  /// Sums the statistics over the ranks (`--batch-norm sync`); nil: this rank's samples only.
  public var synchronizer: StatisticsSynchronizer?
  /// Forwards in training the running statistics have been updated by (PyTorch's num_batches_tracked).
  public var batchesTracked: Int64 = 0

  private var weight: UnsafeMutablePointer<Float>!
  private var gradient: UnsafeMutablePointer<Float>!
  private var offset = 0
  private var runningMean: UnsafeMutablePointer<Float>!
  private var runningVariance: UnsafeMutablePointer<Float>!
  /// Per channel, from the last training forward: its mean, 1/√(var + ε), and for the backward γ·invstd.
  private let mean: FloatBuffer
  private let invstd: FloatBuffer
  private let scale: FloatBuffer
  private let shift: FloatBuffer
  /// [2c] the last training forward's mean, then its unbiased variance (what the running statistics take).
  public let batchStatistics: FloatBuffer
  /// [2c + 1] double sums (Σx or Σdy, then Σx² or Σdy·x̂, then the count N) and the backward's per-channel terms.
  private let sums: UnsafeMutablePointer<Double>
  private let meanGradient: FloatBuffer
  private let meanGradientProduct: FloatBuffer
  /// N of the last training forward (over every rank when synchronised).
  private var count = 0.0

  public init(inputShape: [Int]) {
    precondition(inputShape.count == 3 || inputShape.count == 1, "BatchNorm takes [c, h, w] or [n], got \(inputShape)")
    self.inputShape = inputShape
    channels = inputShape[0]
    pixels = inputShape.dropFirst().reduce(1, *)
    mean = FloatBuffer(count: channels)
    invstd = FloatBuffer(count: channels)
    scale = FloatBuffer(count: channels)
    shift = FloatBuffer(count: channels)
    batchStatistics = FloatBuffer(count: 2 * channels)
    meanGradient = FloatBuffer(count: channels)
    meanGradientProduct = FloatBuffer(count: channels)
    sums = .allocate(capacity: 2 * channels + 1)
    sums.initialize(repeating: 0, count: 2 * channels + 1)
  }

  deinit { sums.deallocate() }

  public var outputShape: [Int] { inputShape }
  public var storage: LayerStorage { .own }
  public var parameterShapes: [(suffix: String, shape: [Int])] { [("weight", [channels]), ("bias", [channels])] }
  public var bufferShapes: [(suffix: String, shape: [Int])] {
    [("running_mean", [channels]), ("running_var", [channels])]
  }
  public var torchExpression: String {
    "torch.nn.BatchNorm\(inputShape.count == 3 ? "2d" : "1d")(\(channels))"
  }

  public func bind(
    parameters: UnsafeMutablePointer<Float>?, gradients: UnsafeMutablePointer<Float>?, offset: Int, index: Int
  ) {
    weight = parameters
    gradient = gradients
    self.offset = offset
  }

  public func bindBuffers(_ buffers: UnsafeMutablePointer<Float>?) {
    runningMean = buffers
    runningVariance = buffers.map { $0 + channels }
  }

  /// γ = 1, β = 0 (nothing drawn); running_mean = 0, running_var = 1, no batches tracked.
  public func initializeParameters(using generator: inout Xoshiro256) {
    weight.update(repeating: 1, count: channels)
    (weight + channels).update(repeating: 0, count: channels)
    resetBuffers()
  }

  public func resetBuffers() {
    runningMean.update(repeating: 0, count: channels)
    runningVariance.update(repeating: 1, count: channels)
    batchesTracked = 0
  }

  public func forward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
    let (gamma, beta) = (UnsafePointer(weight!), UnsafePointer(weight + channels))
    if training {
      // The batch's (or the step's, synchronised) moments, in double.
      sums.update(repeating: 0, count: 2 * channels + 1)
      ddp_batch_norm_moments(sums, x, batch, channels, pixels)
      sums[2 * channels] = Double(batch * pixels)
      synchronizer?.sumOverRanks(UnsafeMutableBufferPointer(start: sums, count: 2 * channels + 1))
      count = sums[2 * channels]
      for ch in 0..<channels {
        let m = sums[ch] / count
        let variance = max(sums[channels + ch] / count - m * m, 0)
        let s = 1 / (variance + Self.epsilon).squareRoot()
        mean[ch] = Float(m)
        invstd[ch] = Float(s)
        scale[ch] = gamma[ch] * Float(s)
        shift[ch] = beta[ch]
        batchStatistics[ch] = Float(m)
        batchStatistics[channels + ch] = Float(count > 1 ? variance * count / (count - 1) : variance)
      }
      ddp_batch_norm_apply(y, x, mean.pointer, scale.pointer, shift.pointer, batch, channels, pixels, appliesReLU)
    } else {
      for ch in 0..<channels {
        let s = 1 / (Double(runningVariance[ch]) + Self.epsilon).squareRoot()
        scale[ch] = gamma[ch] * Float(s)
        shift[ch] = beta[ch]
      }
      ddp_batch_norm_apply(
        y, x, runningMean, scale.pointer, shift.pointer, batch, channels, pixels, appliesReLU)
    }
    StepProfile.current?.lap(.elementwise)
  }

  /// dγ, dβ from this rank's samples; dx from the statistics' normalisation over all N values (the two sums
  /// synchronised first when `synchronizer` is set). Needs the training forward of the same batch just before.
  public func backward(
    x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, rangeElements: Int, gradientsReady: (Range<Int>) -> Void
  ) {
    sums.update(repeating: 0, count: 2 * channels + 1)
    ddp_batch_norm_gradient_sums(sums, dy, x, mean.pointer, invstd.pointer, batch, channels, pixels)
    for ch in 0..<channels {
      gradient[ch] += Float(sums[channels + ch])
      gradient[channels + ch] += Float(sums[ch])
    }
    if let dx {
      synchronizer?.sumOverRanks(UnsafeMutableBufferPointer(start: sums, count: 2 * channels))
      let gamma = UnsafePointer(weight!)
      for ch in 0..<channels {
        scale[ch] = gamma[ch] * invstd[ch]
        meanGradient[ch] = Float(sums[ch] / count)
        meanGradientProduct[ch] = Float(sums[channels + ch] / count)
      }
      ddp_batch_norm_input_gradient(
        dx, dy, x, mean.pointer, invstd.pointer, scale.pointer, meanGradient.pointer, meanGradientProduct.pointer,
        batch, channels, pixels)
    }
    StepProfile.current?.lap(.elementwise)
    gradientsReady(offset..<(offset + 2 * channels))
    StepProfile.current?.lap(.communication)
  }

  /// running = (1 − momentum)·running + momentum·statistics, with statistics [2c] (mean, then unbiased variance)
  /// each divided by `divisor` (the ranks whose statistics were summed into them); one more batch tracked.
  public func updateRunningStatistics(_ statistics: UnsafePointer<Float>, divisor: Float) {
    let (keep, take) = (1 - Self.momentum, Self.momentum)
    for ch in 0..<channels {
      runningMean[ch] = keep * runningMean[ch] + take * (statistics[ch] / divisor)
      runningVariance[ch] = keep * runningVariance[ch] + take * (statistics[channels + ch] / divisor)
    }
    batchesTracked += 1
  }
}

/// Sums per-channel statistics over the ranks of a step (`--batch-norm sync`). Every rank passes its own sums and
/// receives the sums over all ranks, the same bits on every rank. A layer's pass cannot throw: a failure is kept
/// by the synchronizer for the trainer to raise after the pass (the values are then meaningless).
public protocol StatisticsSynchronizer: AnyObject {
  /// values: this rank's sums on entry, the sums over all ranks on return.
  func sumOverRanks(_ values: UnsafeMutableBufferPointer<Double>)
}
