import Testing

@testable import Datasets

@Suite("Batch assembler")
struct BatchAssemblerTests {
  /// 256 rows of 3 features covering every byte value, labels cycling through 10 classes.
  static let dataset: Dataset = {
    var pixels: [UInt8] = []
    var labels: [UInt8] = []
    for row in 0..<256 {
      pixels += [UInt8(row), UInt8(255 - row), UInt8((row * 7) % 256)]
      labels.append(UInt8(row % 10))
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
