import Tensors

/// What happens to a sample between its bytes and the network, after x = pixel / 255 (`BatchAssembler`):
/// in training only, a random crop of the zero-padded image and a random horizontal flip (torchvision's
/// `RandomCrop(size, padding=P)` and `RandomHorizontalFlip()`); always, a per-channel normalisation
/// x = (x − mean[c]) / std[c] (`Normalize(mean, std)`). Padding is 0 before the normalisation, as torchvision pads
/// the image before `Normalize`.
///
/// Randomness follows the sample, not the rank: sample position p of epoch e's permutation draws its crop and flip
/// from SplitMix64 seeded by (seed, e, p) alone (`draws`), so K workers with batch B see the same augmented samples
/// as one process with batch K·B, and a resumed run the same as an uninterrupted one.
public struct Preprocessing: Sendable, Equatable {
  /// P: pixels of zero padding on each side before cropping back to height × width; 0 is off.
  public var randomCrop = 0
  public var randomFlip = false
  /// One per channel, or empty for no normalisation.
  public var normalization: Normalization?

  public init(randomCrop: Int = 0, randomFlip: Bool = false, normalization: Normalization? = nil) {
    self.randomCrop = randomCrop
    self.randomFlip = randomFlip
    self.normalization = normalization
  }

  /// Whether training samples are transformed at random.
  public var isRandom: Bool { randomCrop > 0 || randomFlip }

  /// Sample position `position` of epoch `epoch`'s draws: the crop's offsets in 0...2P (rows, columns) and whether
  /// to flip. A pure function of its arguments; no allocation.
  @inline(__always)
  public func draws(seed: UInt64, epoch: Int, position: Int) -> (dy: Int, dx: Int, flip: Bool) {
    var mixer = SplitMix64(
      state: seed ^ (RandomStream.augmentation &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(epoch) << 40)
        ^ UInt64(position))
    _ = mixer.next()
    let span = UInt64(2 * randomCrop + 1)
    let dy = Int(mixer.next().multipliedFullWidth(by: span).high)
    let dx = Int(mixer.next().multipliedFullWidth(by: span).high)
    let flip = randomFlip && (mixer.next() >> 63) == 1
    return (dy, dx, flip)
  }
}

/// `--normalize MEANS:STDS`: per-channel means and standard deviations, e.g. `0.286:0.353` (one channel) or
/// `0.49,0.48,0.45:0.25,0.24,0.26` (three).
public struct Normalization: Sendable, Equatable, Codable, CustomStringConvertible {
  public var means: [Float]
  public var stds: [Float]

  public init?(means: [Float], stds: [Float]) {
    guard !means.isEmpty, means.count == stds.count, means.allSatisfy(\.isFinite),
      stds.allSatisfy({ $0.isFinite && $0 > 0 })
    else { return nil }
    self.means = means
    self.stds = stds
  }

  /// Parses `MEANS:STDS`; nil when it is not that (one number per channel on each side, every std > 0).
  public init?(_ text: String) {
    let sides = text.split(separator: ":", omittingEmptySubsequences: false)
    guard sides.count == 2 else { return nil }
    func numbers(_ side: Substring) -> [Float]? {
      let items = side.split(separator: ",", omittingEmptySubsequences: false).map { Float(String($0)) }
      return items.contains(nil) ? nil : items.map { $0! }
    }
    guard let means = numbers(sides[0]), let stds = numbers(sides[1]) else { return nil }
    self.init(means: means, stds: stds)
  }

  public var description: String {
    means.map { "\($0)" }.joined(separator: ",") + ":" + stds.map { "\($0)" }.joined(separator: ",")
  }

  /// As the option writes it (`"0.286:0.353"`), in state.json too.
  public init(from decoder: any Decoder) throws {
    let text = try decoder.singleValueContainer().decode(String.self)
    guard let parsed = Normalization(text) else {
      throw DecodingError.dataCorrupted(
        DecodingError.Context(codingPath: decoder.codingPath, debugDescription: "expected MEANS:STDS, found '\(text)'"))
    }
    self = parsed
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(description)
  }
}
