/// The 64-bit Fowler–Noll–Vo hash, variant 1a (xor, then multiply): the project's one cheap fingerprint, used to
/// check that ranks loaded the same data, run the same settings and hold the same parameters.
public struct FNV1a64: Sendable {
  public static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
  public static let prime: UInt64 = 0x0000_0100_0000_01b3
  public private(set) var value = offsetBasis

  public init() {}

  /// Feeds bytes, one at a time (standard FNV-1a).
  public mutating func combine(_ bytes: UnsafeRawBufferPointer) {
    var h = value
    for byte in bytes { h = (h ^ UInt64(byte)) &* Self.prime }
    value = h
  }

  /// Feeds 32-bit words, one per step: a quarter of the work for large Float buffers (parameters).
  public mutating func combine(words: UnsafeBufferPointer<UInt32>) {
    var h = value
    for word in words { h = (h ^ UInt64(word)) &* Self.prime }
    value = h
  }

  /// FNV-1a of `bytes`.
  public static func hash(_ bytes: [UInt8]) -> UInt64 {
    var hash = FNV1a64()
    bytes.withUnsafeBytes { hash.combine($0) }
    return hash.value
  }
}
