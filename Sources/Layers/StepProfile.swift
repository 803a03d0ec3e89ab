import Dispatch

/// Where `Sequential.forward` and `Sequential.accumulateGradients` spend their time, split into GEMM, elementwise
/// (bias, ReLU, im2col, pooling, column sums) and loss, with every GEMM call site's shape, time and FLOPs. For
/// `ddp-train bench` only: training runs with `StepProfile.current == nil`, and then each checkpoint costs one
/// load and one branch.
///
/// Not thread-safe: profile one model on one thread (the benchmark's rank), never the in-process test groups.
public final class StepProfile {
  /// What a stretch of time between two `lap`s was spent on.
  public enum Phase: Int, CaseIterable, Sendable {
    /// `communication`: inside the backward's `gradientsReady` callbacks (starting and progressing all-reduces).
    case gemm, elementwise, loss, communication
  }

  /// One GEMM call site: C[m,n] = op(A)[m,k]·op(B)[k,n] (row-major), with the calls and time summed.
  public struct GEMMSite: Sendable, Equatable {
    public var name: String
    public var transposeA: Bool
    public var transposeB: Bool
    public var m: Int
    public var n: Int
    public var k: Int
    public var calls = 0
    public var seconds = 0.0
    /// 2·m·n·k per call.
    public var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
  }

  /// Seconds per phase, indexed by `Phase.rawValue`.
  public private(set) var seconds = [Double](repeating: 0, count: Phase.allCases.count)
  /// GEMM call sites ("0.fwd", "0.dW", "2.dx", ...: the layer's state_dict index; one per shape), in first-call
  /// order.
  public private(set) var sites: [GEMMSite] = []
  private var siteIndex: [SiteKey: Int] = [:]
  private var last: UInt64 = 0
  /// Wall seconds inside each layer's forward and backward (indexed by the layer's position in the model), GEMMs
  /// and communication callbacks included: where a step's time goes layer by layer.
  public private(set) var layerForwardSeconds: [Double] = []
  public private(set) var layerBackwardSeconds: [Double] = []
  /// Wall seconds per kind of layer (its Swift type: `Conv2d`, `BatchNorm`, ...), forward and backward, in first-use
  /// order. A container (`ResidualBlock`) charges its inner layers to their own kinds and keeps only its own passes
  /// (the sum of the branches, dy's copies), so the kinds add up to the layers' total without counting twice.
  public private(set) var kindSeconds: [(kind: String, forward: Double, backward: Double)] = []
  private var kindIndex: [ObjectIdentifier: Int] = [:]
  /// Seconds charged so far by layers inside containers: what a container subtracts from its own kind.
  private var nestedSeconds = 0.0

  public init() {}

  /// The profile the layers report to; nil (the default) in training. Set by `ddp-train bench` on one rank.
  nonisolated(unsafe) public static var current: StepProfile?

  /// Zeroes the sums (keeps the sites, so the steady state allocates nothing).
  public func reset() {
    for i in seconds.indices { seconds[i] = 0 }
    for i in layerForwardSeconds.indices {
      layerForwardSeconds[i] = 0
      layerBackwardSeconds[i] = 0
    }
    for i in kindSeconds.indices {
      kindSeconds[i].forward = 0
      kindSeconds[i].backward = 0
    }
    for i in sites.indices {
      sites[i].calls = 0
      sites[i].seconds = 0
    }
  }

  @inline(__always) func start() { last = DispatchTime.now().uptimeNanoseconds }

  @inline(__always) func lap(_ phase: Phase) {
    let now = DispatchTime.now().uptimeNanoseconds
    seconds[phase.rawValue] += Double(now &- last) * 1e-9
    last = now
  }

  /// A timestamp for `chargeLayer`.
  @inline(__always) func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

  /// What `chargeLayer` and `chargeNested` need from the start of a layer's pass.
  struct LayerMark {
    var started: UInt64
    var nestedBefore: Double
  }

  @inline(__always) func mark() -> LayerMark { LayerMark(started: now(), nestedBefore: nestedSeconds) }

  /// Adds the time since `mark` to layer `index`'s forward or backward and to its kind (the layer count and the
  /// kinds are learnt on first use, so the steady state allocates nothing).
  func chargeLayer(_ index: Int, _ layer: Layer, backward: Bool, since mark: LayerMark) {
    if index >= layerForwardSeconds.count {
      layerForwardSeconds += Array(repeating: 0, count: index + 1 - layerForwardSeconds.count)
      layerBackwardSeconds += Array(repeating: 0, count: index + 1 - layerBackwardSeconds.count)
    }
    let elapsed = Double(now() &- mark.started) * 1e-9
    if backward { layerBackwardSeconds[index] += elapsed } else { layerForwardSeconds[index] += elapsed }
    chargeKind(layer, backward: backward, seconds: elapsed - (nestedSeconds - mark.nestedBefore))
  }

  /// Adds the time since `mark` of a layer inside a container to its kind, and to what the container subtracts.
  func chargeNested(_ layer: Layer, backward: Bool, since mark: LayerMark) {
    let elapsed = Double(now() &- mark.started) * 1e-9
    chargeKind(layer, backward: backward, seconds: elapsed - (nestedSeconds - mark.nestedBefore))
    nestedSeconds = mark.nestedBefore + elapsed
  }

  private func chargeKind(_ layer: Layer, backward: Bool, seconds: Double) {
    let key = ObjectIdentifier(type(of: layer))
    let index: Int
    if let known = kindIndex[key] {
      index = known
    } else {
      kindSeconds.append((String(describing: type(of: layer)), 0, 0))
      index = kindSeconds.count - 1
      kindIndex[key] = index
    }
    if backward { kindSeconds[index].backward += seconds } else { kindSeconds[index].forward += seconds }
  }

  /// What a GEMM call computes: layer l's forward, weight gradient or input gradient.
  public enum GEMMKind: Int, Sendable {
    case forward, weightGradient, inputGradient
    var label: String { ["fwd", "dW", "dx"][rawValue] }
  }

  private struct SiteKey: Hashable {
    var layer: Int
    var kind: Int
    var m: Int
    var n: Int
    var k: Int
  }

  /// Charges the time since the last checkpoint to the GEMM phase and to its call site (layer, kind, shape), for
  /// `calls` calls of that shape timed together.
  func lapGEMM(
    layer: Int, _ kind: GEMMKind, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, calls: Int = 1
  ) {
    let now = DispatchTime.now().uptimeNanoseconds
    let elapsed = Double(now &- last) * 1e-9
    last = now
    seconds[Phase.gemm.rawValue] += elapsed
    let key = SiteKey(layer: layer, kind: kind.rawValue, m: m, n: n, k: k)
    let index: Int
    if let known = siteIndex[key] {
      index = known
    } else {
      sites.append(
        GEMMSite(
          name: "\(layer).\(kind.label)", transposeA: transposeA, transposeB: transposeB, m: m,
          n: n, k: k))
      index = sites.count - 1
      siteIndex[key] = index
    }
    sites[index].calls += calls
    sites[index].seconds += elapsed
  }

  /// Total GEMM FLOPs over all recorded calls.
  public var gemmFlops: Double { sites.reduce(0) { $0 + $1.flops * Double($1.calls) } }
}
