import Testing

@testable import Tensors

@Suite struct FloatBufferTests {
  @Test func zeroInitialisedAndAligned() {
    for count in [0, 1, 17, 1000] {
      let buffer = FloatBuffer(count: count)
      #expect(buffer.count == count)
      #expect(Int(bitPattern: buffer.pointer) % 64 == 0)
      #expect(buffer.array == [Float](repeating: 0, count: count))
    }
  }

  @Test func copySubscriptZero() {
    let buffer = FloatBuffer(count: 3)
    buffer.copy(from: [1, 2, 3])
    #expect(buffer.array == [1, 2, 3])
    buffer[1] = 7
    #expect(buffer[1] == 7 && buffer.pointer[1] == 7)
    #expect(buffer.buffer.count == 3 && buffer.buffer[2] == 3)
    buffer.zero()
    #expect(buffer.array == [0, 0, 0])
    #expect(FloatBuffer([4, 5]).array == [4, 5])
  }
}

@Suite struct ElementwiseTests {
  @Test func kernels() {
    var x: [Float] = [1, 2, 3]
    Elementwise.scale(&x, count: 3, by: 2)
    #expect(x == [2, 4, 6])
    var y: [Float] = [1, 1, 1]
    Elementwise.axpy(alpha: 0.5, x: x, y: &y, count: 3)
    #expect(y == [2, 3, 4])
    var matrix: [Float] = [1, 2, 3, 4, 5, 6]  // [2, 3]
    Elementwise.addRowVector([10, 20, 30], to: &matrix, rows: 2, columns: 3)
    #expect(matrix == [11, 22, 33, 14, 25, 36])
    var sums: [Float] = [1, 1, 1]
    Elementwise.accumulateColumnSums(of: matrix, rows: 2, columns: 3, into: &sums)
    #expect(sums == [26, 48, 70])
  }
}
