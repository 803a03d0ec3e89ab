import Testing

@testable import Datasets

/// `--random-crop`, `--random-flip` and `--normalize` in `BatchAssembler`, against a naive reference built from the
/// same draws, and the draws themselves.
@Suite struct AugmentationTests {
  /// 40 images of 2 channels, 4 × 5 pixels, every pixel a different byte (so any misplaced pixel shows).
  static let shape = [2, 4, 5]
  static let dataset: Dataset = {
    let features = 40
    let pixels = (0..<(40 * features)).map { UInt8(($0 * 37 + 11) % 256) }
    return Dataset(
      count: 40, featureCount: features, classCount: 3, pixels: pixels, labels: (0..<40).map { Int32($0 % 3) },
      sampleShape: shape)
  }()

  /// The crop of the zero-padded image at (dy, dx), then the mirror when `flip`, then (x − mean)/std, in Double.
  static func reference(
    row: Int, draw: (dy: Int, dx: Int, flip: Bool), pad: Int, normalization: Normalization?
  ) -> [Double] {
    let (channels, height, width) = (shape[0], shape[1], shape[2])
    var out: [Double] = []
    for ch in 0..<channels {
      for y in 0..<height {
        for x in 0..<width {
          let sy = y + draw.dy - pad
          let sx = (draw.flip ? width - 1 - x : x) + draw.dx - pad
          var value = 0.0
          if sy >= 0 && sy < height && sx >= 0 && sx < width {
            value = Double(dataset.pixels[row * 40 + (ch * height + sy) * width + sx]) / 255
          }
          if let normalization {
            value = (value - Double(normalization.means[ch])) / Double(normalization.stds[ch])
          }
          out.append(value)
        }
      }
    }
    return out
  }

  @Test("each sample is cropped, flipped and normalised as the draws of its permutation position say")
  func cropFlipAndNormalizeMatchTheReference() throws {
    let normalization = try #require(Normalization("0.25,0.5:0.5,2"))
    let preprocessing = Preprocessing(randomCrop: 2, randomFlip: true, normalization: normalization)
    let assembler = BatchAssembler(
      featureCount: 40, maxBatch: 16, sampleShape: Self.shape, preprocessing: preprocessing)
    let indices: [Int32] = (0..<16).map { Int32(($0 * 7 + 3) % 40) }
    let positions = BatchAssembler.Positions(seed: 9, epoch: 4, first: 5, stride: 3)
    indices.withUnsafeBufferPointer { assembler.assemble(from: Self.dataset, indices: $0, positions: positions) }
    var flips = 0
    for slot in 0..<16 {
      let draw = preprocessing.draws(seed: 9, epoch: 4, position: 5 + 3 * slot)
      flips += draw.flip ? 1 : 0
      let expected = Self.reference(row: Int(indices[slot]), draw: draw, pad: 2, normalization: normalization)
      for i in 0..<40 {
        #expect(abs(Double(assembler.inputs[slot * 40 + i]) - expected[i]) <= 1e-6, "slot \(slot) element \(i)")
      }
    }
    #expect(flips > 0 && flips < 16)
    // Evaluation (no positions): the normalisation only.
    let plain = Preprocessing(normalization: normalization)
    indices.withUnsafeBufferPointer { assembler.assemble(from: Self.dataset, indices: $0) }
    let unchanged = Self.reference(
      row: Int(indices[0]), draw: (2, 2, false), pad: 2, normalization: plain.normalization)
    for i in 0..<40 { #expect(abs(Double(assembler.inputs[i]) - unchanged[i]) <= 1e-6) }
  }

  @Test("the draws are a function of (seed, epoch, position) alone, cover every offset, and flip about half the time")
  func drawsFollowTheSample() {
    let preprocessing = Preprocessing(randomCrop: 4, randomFlip: true)
    var offsets = Set<Int>()
    var flips = 0
    for position in 0..<4000 {
      let draw = preprocessing.draws(seed: 1, epoch: 2, position: position)
      #expect(draw == preprocessing.draws(seed: 1, epoch: 2, position: position))
      #expect((0...8).contains(draw.dy) && (0...8).contains(draw.dx))
      offsets.insert(draw.dy * 9 + draw.dx)
      flips += draw.flip ? 1 : 0
    }
    #expect(offsets.count == 81)
    #expect(abs(flips - 2000) < 200, "\(flips) flips of 4000")
    // Another epoch or seed draws anew.
    let other = (0..<100).filter {
      preprocessing.draws(seed: 1, epoch: 3, position: $0) != preprocessing.draws(seed: 1, epoch: 2, position: $0)
    }
    #expect(other.count > 80)
    #expect(Preprocessing(randomCrop: 4).draws(seed: 1, epoch: 2, position: 7).flip == false)
  }

  @Test("--normalize parses MEANS:STDS with one value per channel and positive stds")
  func normalizationParses() {
    #expect(Normalization("0.286:0.353") == Normalization(means: [0.286], stds: [0.353]))
    #expect(Normalization("0.5,0.4,0.3:0.2,0.2,0.25")?.means == [0.5, 0.4, 0.3])
    for bad in ["0.5", "0.5:", ":0.5", "0.5:0", "0.5:-1", "0.5,0.5:0.2", "a:b", "0.5:0.2:0.1"] {
      #expect(Normalization(bad) == nil, "\(bad)")
    }
  }
}
