import Testing

@testable import Tensors

/// The C kernels run vectorised over the body of an array and scalar over its tail; these sizes put every case
/// in both (1037 = 64·16 + 13).
@Suite struct ElementwiseKernelTests {
  let count = 1037

  @Test(arguments: [0, 5, 500, 1023, 1036])
  func allFiniteFindsNaNAndInfinityAnywhere(position: Int) {
    var generator = Xoshiro256(seed: 3)
    var values = (0..<count).map { _ in generator.nextFloat(in: -1e30, 1e30) }
    #expect(Elementwise.allFinite(values, count: count))
    for bad in [Float.nan, .infinity, -.infinity, -Float.nan] {
      let kept = values[position]
      values[position] = bad
      #expect(!Elementwise.allFinite(values, count: count), "\(bad) at \(position)")
      values[position] = kept
    }
    // The largest finite values and subnormals are finite.
    values[position] = .greatestFiniteMagnitude
    values[(position + 1) % count] = -.leastNonzeroMagnitude
    #expect(Elementwise.allFinite(values, count: count))
  }

  @Test func addMatchesTheScalarSumBitForBit() {
    var generator = Xoshiro256(seed: 4)
    let part = (0..<count).map { _ in generator.nextFloat(in: -1, 1) }
    var out = (0..<count).map { _ in generator.nextFloat(in: -1, 1) }
    let expected = zip(out, part).map { $0 + $1 }
    Elementwise.add(part, into: &out, count: count)
    #expect(out == expected)
  }

  @Test func sumMatchesTheScalarSumBitForBit() {
    var generator = Xoshiro256(seed: 5)
    let a = (0..<count).map { _ in generator.nextFloat(in: -1, 1) }
    let b = (0..<count).map { _ in generator.nextFloat(in: -1e-3, 1e-3) }
    var out = [Float](repeating: .nan, count: count)
    Elementwise.sum(a, b, into: &out, count: count)
    #expect(out == zip(a, b).map { $0 + $1 })
  }
}
