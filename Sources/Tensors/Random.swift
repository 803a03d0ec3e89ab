/// A small, fast, reproducible random number generator (xoshiro256**, seeded through SplitMix64).
///
/// Everything random in ddp-train (initial weights, the per-epoch permutation, the synthetic dataset)
/// is drawn from one of these, created from the run's seed and a stream label, so a run is a pure
/// function of its configuration and every rank can recompute any epoch's order without communication.
public struct Xoshiro256: RandomNumberGenerator, Sendable, Equatable, Codable {
  /// The generator's whole state; saving and restoring it restores the stream exactly.
  public var state: [UInt64]

  /// A generator for `(seed, stream)`: distinct streams are independent sequences from one seed.
  public init(seed: UInt64, stream: UInt64 = 0) {
    var mixer = SplitMix64(state: seed ^ (stream &* 0x9E37_79B9_7F4A_7C15))
    // Mix the stream twice more so nearby (seed, stream) pairs start far apart.
    _ = mixer.next()
    state = (0..<4).map { _ in mixer.next() }
    if state.allSatisfy({ $0 == 0 }) { state[0] = 1 }  // the all-zero state is a fixed point
  }

  @inline(__always)
  private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 &- k)) }

  public mutating func next() -> UInt64 {
    let result = Self.rotl(state[1] &* 5, 7) &* 9
    let t = state[1] << 17
    state[2] ^= state[0]
    state[3] ^= state[1]
    state[1] ^= state[2]
    state[0] ^= state[3]
    state[2] ^= t
    state[3] = Self.rotl(state[3], 45)
    return result
  }

  /// Uniform in [0, 1) with 24 random bits: every value is an exact Float.
  @inline(__always)
  public mutating func nextUnitFloat() -> Float {
    Float(next() >> 40) * (1.0 / 16_777_216.0)
  }

  /// Uniform in [low, high).
  @inline(__always)
  public mutating func nextFloat(in low: Float, _ high: Float) -> Float {
    low + (high - low) * nextUnitFloat()
  }

  /// Uniform integer in 0..<bound without modulo bias (Lemire's multiply-and-reject).
  public mutating func nextIndex(below bound: Int) -> Int {
    precondition(bound > 0, "bound must be positive")
    let b = UInt64(bound)
    var product = next().multipliedFullWidth(by: b)
    if product.low < b {
      let threshold = (0 &- b) % b
      while product.low < threshold { product = next().multipliedFullWidth(by: b) }
    }
    return Int(product.high)
  }
}

/// SplitMix64, used only to expand a 64-bit seed into xoshiro's 256-bit state.
public struct SplitMix64: Sendable {
  public var state: UInt64
  public init(state: UInt64) { self.state = state }
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// Stream labels, so the users of one seed never share a sequence.
public enum RandomStream {
  public static let initialization: UInt64 = 1
  public static let syntheticData: UInt64 = 2
  /// The permutation of epoch e uses stream `epochPermutationBase + e`.
  public static let epochPermutationBase: UInt64 = 1 << 32
  /// Data augmentation's per-sample draws (`Preprocessing.draws`), mixed with the epoch and the sample's position.
  public static let augmentation: UInt64 = 3
  /// Dropout's masks (`Dropout`), mixed with the step, the layer and the sample's position in the global batch.
  public static let dropout: UInt64 = 4
}
