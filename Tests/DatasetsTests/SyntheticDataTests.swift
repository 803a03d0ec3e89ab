import Testing

@testable import Datasets

@Suite("Synthetic data")
struct SyntheticDataTests {
  static let spec = SyntheticSpec(trainCount: 2000, testCount: 1000, seed: 2017)
  static let pair: DatasetPair = try! DatasetLoader.load(
    .synthetic, directory: nil, synthetic: spec)

  @Test("shapes, label range and source")
  func shapes() {
    let pair = Self.pair
    #expect(pair.kind == .synthetic)
    #expect(pair.source == "synthetic(seed 2017)")
    #expect(pair.train.count == 2000 && pair.test.count == 1000)
    #expect(pair.train.featureCount == 784 && pair.train.classCount == 10)
    #expect(Set(pair.train.labels) == Set(0..<10))
    #expect(Set(pair.test.labels) == Set(0..<10))
    // Images, not noise or blanks: some saturated pixels, some dark ones, a mid-grey mean.
    let mean =
      Double(pair.train.pixels.reduce(0) { $0 + Int($1) }) / Double(pair.train.pixels.count)
    #expect(mean > 20 && mean < 200)
    #expect(pair.train.pixels.contains(0) && pair.train.pixels.contains(255))
  }

  @Test("the same spec gives identical bytes; another seed other data; train and test differ")
  func determinism() throws {
    let again = try DatasetLoader.load(.synthetic, directory: nil, synthetic: Self.spec)
    #expect(
      again.train.pixels == Self.pair.train.pixels && again.train.labels == Self.pair.train.labels)
    #expect(
      again.test.pixels == Self.pair.test.pixels && again.test.labels == Self.pair.test.labels)
    #expect(again.train.fingerprint == Self.pair.train.fingerprint)

    var otherSpec = Self.spec
    otherSpec.seed = 2018
    let other = try DatasetLoader.load(.synthetic, directory: nil, synthetic: otherSpec)
    #expect(other.train.pixels != Self.pair.train.pixels)
    #expect(other.train.fingerprint != Self.pair.train.fingerprint)

    #expect(Array(Self.pair.train.pixels.prefix(1000 * 784)) != Self.pair.test.pixels)
  }

  @Test("the test split does not depend on the size of the train split")
  func testSplitStable() throws {
    var smaller = Self.spec
    smaller.trainCount = 10
    let pair = try DatasetLoader.load(.synthetic, directory: nil, synthetic: smaller)
    #expect(pair.test.pixels == Self.pair.test.pixels)
    #expect(pair.train.pixels == Array(Self.pair.train.pixels.prefix(10 * 784)))
  }

  @Test("learnable but not trivial: nearest class mean gets between 60% and 100% on the test split")
  func learnability() {
    let (train, test) = (Self.pair.train, Self.pair.test)
    let (trainPixels, testPixels) = (train.pixels, test.pixels)
    let (f, c) = (train.featureCount, train.classCount)
    var means = [Double](repeating: 0, count: c * f)
    var counts = [Double](repeating: 0, count: c)
    for i in 0..<train.count {
      let label = Int(train.labels[i])
      counts[label] += 1
      for k in 0..<f { means[label * f + k] += Double(trainPixels[i * f + k]) }
    }
    for label in 0..<c { for k in 0..<f { means[label * f + k] /= counts[label] } }
    var correct = 0
    for i in 0..<test.count {
      var best = (label: -1, distance: Double.infinity)
      for label in 0..<c {
        var distance = 0.0
        for k in 0..<f {
          let d = Double(testPixels[i * f + k]) - means[label * f + k]
          distance += d * d
        }
        if distance < best.distance { best = (label, distance) }
      }
      if best.label == Int(test.labels[i]) { correct += 1 }
    }
    let accuracy = Double(correct) / Double(test.count)
    print("synthetic nearest-class-mean test accuracy: \(accuracy)")
    #expect(accuracy > 0.6)
    #expect(accuracy < 1.0)
  }

  @Test("other shapes: a non-square feature count and three classes")
  func otherShapes() throws {
    let spec = SyntheticSpec(
      trainCount: 50, testCount: 20, featureCount: 50, classCount: 3, seed: 1)
    let pair = try DatasetLoader.load(.synthetic, directory: nil, synthetic: spec)
    #expect(pair.train.featureCount == 50 && pair.train.pixels.count == 2500)
    #expect(pair.test.labels.allSatisfy { $0 < 3 })
  }

  @Test("an impossible spec is a DatasetError, not a crash")
  func invalidSpec() {
    for spec in [
      SyntheticSpec(trainCount: 0), SyntheticSpec(featureCount: 0), SyntheticSpec(classCount: 1),
      SyntheticSpec(classCount: 300), SyntheticSpec(trainCount: Int.max / 2),
    ] {
      let error = #expect(throws: DatasetError.self) {
        try DatasetLoader.load(.synthetic, directory: nil, synthetic: spec)
      }
      #expect(error?.path == "synthetic")
      #expect(error?.problem.contains("expected") == true)
    }
  }
}
