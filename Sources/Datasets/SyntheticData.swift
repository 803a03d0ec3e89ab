import Foundation
import Tensors

/// A deterministic, learnable image-classification problem, so the whole pipeline runs without data files.
///
/// The features are laid out on a near-square grid (28x28 for 784), which is the samples' image shape when it is
/// full (`Grid.sampleShape`). Each class has a smooth prototype: a shared
/// background of Gaussian blobs (weight 0.6, so classes overlap) plus four blobs of its own, scaled to a peak of 1.
/// A sample is its class's prototype shifted by up to ±2 pixels, times a brightness in [0.6, 1.3], plus
/// per-pixel noise of standard deviation 0.45, stored as bytes like an IDX image. Tuned so a nearest-class-mean
/// classifier gets ~80% and a linear model ~90% of the test split: learnable, but not instantly.
///
/// Everything comes from `Xoshiro256(seed: spec.seed, stream: RandomStream.syntheticData)`: the prototypes first,
/// then one seed for the train samples and one for the test samples. So the same spec gives identical bytes, the
/// two splits are different draws from one distribution, and the test split does not depend on `trainCount`.
enum SyntheticData {
  static let sharedBlobCount = 6
  static let classBlobCount = 4
  static let sharedWeight: Float = 0.6
  static let brightnessRange: (Float, Float) = (0.6, 1.3)
  static let noiseDeviation: Float = 0.45
  /// Shift and blob sizes are given for a 28-pixel side and scaled with the grid.
  static let referenceSide: Float = 28
  static let maxShift: Float = 2

  static func generate(_ spec: SyntheticSpec) throws(DatasetError) -> (
    train: Dataset, test: Dataset
  ) {
    try validate(spec)
    var rng = Xoshiro256(seed: spec.seed, stream: RandomStream.syntheticData)
    let grid = Grid(featureCount: spec.featureCount)
    let prototypes = makePrototypes(spec: spec, grid: grid, rng: &rng)
    var trainRNG = Xoshiro256(seed: rng.next(), stream: RandomStream.syntheticData)
    var testRNG = Xoshiro256(seed: rng.next(), stream: RandomStream.syntheticData)
    let train = makeSplit(
      count: spec.trainCount, spec: spec, grid: grid, prototypes: prototypes, rng: &trainRNG)
    let test = makeSplit(
      count: spec.testCount, spec: spec, grid: grid, prototypes: prototypes, rng: &testRNG)
    return (train, test)
  }

  private static func validate(_ spec: SyntheticSpec) throws(DatasetError) {
    let hint = "Fix the synthetic section of the configuration"
    func fail(_ problem: String) -> DatasetError {
      DatasetError(path: "synthetic", problem: problem, hint: hint)
    }
    guard spec.trainCount > 0, spec.testCount > 0 else {
      throw fail(
        "expected trainCount and testCount >= 1, found \(spec.trainCount) and \(spec.testCount)")
    }
    guard spec.featureCount > 0, spec.featureCount <= 1 << 20 else {
      throw fail("expected featureCount in 1...\(1 << 20), found \(spec.featureCount)")
    }
    guard spec.classCount >= 2, spec.classCount <= 256 else {
      throw fail("expected classCount in 2...256, found \(spec.classCount)")
    }
    let total = (spec.trainCount + spec.testCount).multipliedReportingOverflow(
      by: spec.featureCount)
    guard !total.overflow, total.partialValue <= IDX.maxPixelBytes, spec.trainCount <= IDX.maxCount
    else {
      throw fail(
        "expected at most \(IDX.maxPixelBytes) pixel bytes, found (\(spec.trainCount) + \(spec.testCount)) samples "
          + "of \(spec.featureCount) features")
    }
  }

  /// Feature i sits at row i / width, column i % width; the last row may be partial.
  struct Grid {
    let featureCount: Int
    let width: Int
    let height: Int
    /// Size relative to a 28-pixel side.
    let scale: Float

    init(featureCount: Int) {
      self.featureCount = featureCount
      width = max(1, Int(Double(featureCount).squareRoot().rounded()))
      height = (featureCount + width - 1) / width
      scale = Float(max(width, height)) / SyntheticData.referenceSide
    }

    /// [1, height, width] when the grid is full (784 → 1x28x28), so a convolution can use the image; else flat.
    var sampleShape: [Int] { width * height == featureCount ? [1, height, width] : [featureCount] }
  }

  /// `[classCount][featureCount]`, each in [0, 1] with a peak of 1.
  private static func makePrototypes(spec: SyntheticSpec, grid: Grid, rng: inout Xoshiro256)
    -> [[Float]]
  {
    let shared = blobs(count: sharedBlobCount, grid: grid, rng: &rng)
    return (0..<spec.classCount).map { _ in
      let own = blobs(count: classBlobCount, grid: grid, rng: &rng)
      var prototype = zip(shared, own).map { sharedWeight * $0 + $1 }
      let peak = prototype.max() ?? 0
      if peak > 0 { prototype = prototype.map { $0 / peak } }
      return prototype
    }
  }

  /// A sum of Gaussian blobs centred in the middle 60% of the grid, radius 1.5-4.5 px, amplitude 0.3-1.
  private static func blobs(count: Int, grid: Grid, rng: inout Xoshiro256) -> [Float] {
    var image = [Float](repeating: 0, count: grid.featureCount)
    for _ in 0..<count {
      let centerY = Float(grid.height) * rng.nextFloat(in: 0.2, 0.8)
      let centerX = Float(grid.width) * rng.nextFloat(in: 0.2, 0.8)
      let radius = grid.scale * rng.nextFloat(in: 1.5, 4.5)
      let amplitude = rng.nextFloat(in: 0.3, 1.0)
      let inverseSpread = 1 / (2 * radius * radius)
      for i in 0..<grid.featureCount {
        let dy = Float(i / grid.width) - centerY
        let dx = Float(i % grid.width) - centerX
        image[i] += amplitude * Float(exp(Double(-(dy * dy + dx * dx) * inverseSpread)))
      }
    }
    return image
  }

  private static func makeSplit(
    count: Int, spec: SyntheticSpec, grid: Grid, prototypes: [[Float]], rng: inout Xoshiro256
  ) -> Dataset {
    let featureCount = spec.featureCount
    let shiftLimit = max(1, Int((maxShift * grid.scale).rounded()))
    var labels = [Int32](repeating: 0, count: count)
    var pixels = [UInt8](repeating: 0, count: count * featureCount)
    // Irwin–Hall: the sum of four uniform 16-bit parts of one draw has mean 2 and variance 1/3.
    let noiseScale = noiseDeviation * Float(3).squareRoot() / 65536
    pixels.withUnsafeMutableBufferPointer { pixels in
      for sample in 0..<count {
        let label = rng.nextIndex(below: spec.classCount)
        labels[sample] = Int32(label)
        let shiftY = rng.nextIndex(below: 2 * shiftLimit + 1) - shiftLimit
        let shiftX = rng.nextIndex(below: 2 * shiftLimit + 1) - shiftLimit
        let brightness = rng.nextFloat(in: brightnessRange.0, brightnessRange.1)
        let prototype = prototypes[label]
        let row = pixels.baseAddress! + sample * featureCount
        for i in 0..<featureCount {
          let y = i / grid.width - shiftY
          let x = i % grid.width - shiftX
          let source = y * grid.width + x
          let inside =
            y >= 0 && y < grid.height && x >= 0 && x < grid.width && source < featureCount
          let clean = inside ? brightness * prototype[source] : 0
          let bits = rng.next()
          let parts =
            (bits & 0xffff) + ((bits >> 16) & 0xffff) + ((bits >> 32) & 0xffff) + (bits >> 48)
          let noise = Float(Int64(parts) - 2 * 65536) * noiseScale
          let value = ((clean + noise) * 255).rounded()
          row[i] = UInt8(min(255, max(0, value)))
        }
      }
    }
    return Dataset(
      count: count, featureCount: featureCount, classCount: spec.classCount, pixels: pixels,
      labels: labels, sampleShape: grid.sampleShape)
  }
}
