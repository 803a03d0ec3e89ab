import Testing

@testable import Datasets

@Suite("Batch assembler")
struct BatchAssemblerTests {
  /// 256 rows of 3 features covering every byte value, labels cycling through 10 classes.
  static let dataset: Dataset = {
    var pixels: [UInt8] = []
    var labels: [Int32] = []
    for row in 0..<256 {
      pixels += [UInt8(row), UInt8(255 - row), UInt8((row * 7) % 256)]
      labels.append(Int32(row % 10))
    }
    return Dataset(count: 256, featureCount: 3, classCount: 10, pixels: pixels, labels: labels)
  }()

  /// p/255 computed in Double and rounded once to Float: the correctly rounded quotient.
  static func reference(_ p: UInt8) -> Float { Float(Double(p) / 255.0) }

  @Test("gathered rows are scaled to p/255 in the order given, labels copied")
  func gather() {
    let assembler = BatchAssembler(featureCount: 3, maxBatch: 300)
    var indices: [Int32] = (0..<256).map { (position: Int) -> Int32 in
      Int32((position * 101 + 17) % 256)
    }
    indices += [5, 5, 0]
    indices.withUnsafeBufferPointer { assembler.assemble(from: Self.dataset, indices: $0) }
    for (slot, index) in indices.enumerated() {
      let row = Int(index)
      for k in 0..<3 {
        #expect(assembler.inputs[slot * 3 + k] == Self.reference(Self.dataset.pixels[row * 3 + k]))
      }
      #expect(assembler.labels[slot] == Int32(row % 10))
    }
    #expect(assembler.inputs[0] == Self.reference(UInt8(17)))
    #expect(Self.reference(255) == 1 && Self.reference(0) == 0)
  }

  @Test("prefetching rows (a hint to the caches) leaves the assembled batch as it was, and is safe at the ends")
  func prefetchChangesNothing() {
    let assembler = BatchAssembler(featureCount: 3, maxBatch: 4)
    let current: [Int32] = [9, 0, 255, 3]
    current.withUnsafeBufferPointer { assembler.assemble(from: Self.dataset, indices: $0) }
    let before = Array(UnsafeBufferPointer(start: assembler.inputs, count: 12))
    let next: [Int32] = [255, 0, 128, 255]  // the last row: its final line prefetched, not past it
    next.withUnsafeBufferPointer { assembler.prefetch(from: Self.dataset, indices: $0) }
    [Int32]().withUnsafeBufferPointer { assembler.prefetch(from: Self.dataset, indices: $0) }
    #expect(Array(UnsafeBufferPointer(start: assembler.inputs, count: 12)) == before)
    #expect(assembler.labels[2] == 5)
  }

  @Test("rows long enough for the vectorised kernel: every byte value, bit for bit")
  func longRows() {
    // 2 rows of 1037 = 64·16 + 13 pixels: a vector body and a scalar tail, all 256 byte values in both.
    let featureCount = 1037
    let pixels = (0..<(2 * featureCount)).map { UInt8(($0 * 37 + $0 / featureCount) % 256) }
    let dataset = Dataset(count: 2, featureCount: featureCount, classCount: 10, pixels: pixels, labels: [3, 4])
    let assembler = BatchAssembler(featureCount: featureCount, maxBatch: 2)
    let indices: [Int32] = [1, 0]
    indices.withUnsafeBufferPointer { assembler.assemble(from: dataset, indices: $0) }
    var differing = 0
    for slot in 0..<2 {
      let row = Int(indices[slot])
      for k in 0..<featureCount {
        let got = assembler.inputs[slot * featureCount + k]
        if got.bitPattern != Self.reference(pixels[row * featureCount + k]).bitPattern { differing += 1 }
      }
    }
    #expect(differing == 0)
    #expect(Set(pixels[0..<featureCount]).count == 256)
  }

  @Test("a contiguous range, for evaluation")
  func range() {
    let assembler = BatchAssembler(featureCount: 3, maxBatch: 8)
    assembler.assemble(from: Self.dataset, range: 250..<256)
    for slot in 0..<6 {
      let row = 250 + slot
      #expect(assembler.inputs[slot * 3] == Self.reference(UInt8(row)))
      #expect(assembler.inputs[slot * 3 + 1] == Self.reference(UInt8(255 - row)))
      #expect(assembler.inputs[slot * 3 + 2] == Self.reference(UInt8((row * 7) % 256)))
      #expect(assembler.labels[slot] == Int32(row % 10))
    }
  }

  @Test("a smaller batch overwrites only its own rows")
  func partialBatch() {
    let assembler = BatchAssembler(featureCount: 3, maxBatch: 4)
    assembler.assemble(from: Self.dataset, range: 10..<14)
    let indices: [Int32] = [200]
    indices.withUnsafeBufferPointer { assembler.assemble(from: Self.dataset, indices: $0) }
    #expect(assembler.inputs[0] == Self.reference(200))
    #expect(assembler.labels[0] == 0)
    #expect(assembler.inputs[3] == Self.reference(11))  // row 11, left from the previous batch
    #expect(assembler.labels[1] == 1)
  }
}
