import Testing

@testable import Tensors

@Suite struct GEMMTests {
  /// Storage for an operand of logical shape [rows, cols] with leading dimension ld ≥ cols.
  static func random(rows: Int, ld: Int, seed: UInt64) -> [Float] {
    var generator = Xoshiro256(seed: seed)
    return (0..<(rows * ld)).map { _ in generator.nextFloat(in: -1, 1) }
  }

  @Test func naiveMatchesHandComputedProduct() {
    // [[1,2,3],[4,5,6]]·[[7,8],[9,10],[11,12]] = [[58,64],[139,154]]; alpha 2, beta 0.5 over C = 1s.
    let a: [Float] = [1, 2, 3, 4, 5, 6]
    let b: [Float] = [7, 8, 9, 10, 11, 12]
    var c: [Float] = [1, 1, 1, 1]
    NaiveGEMM.sgemm(
      .none, .none, m: 2, n: 2, k: 3, alpha: 2, a: a, lda: 3, b: b, ldb: 2, beta: 0.5, c: &c, ldc: 2
    )
    #expect(c == [116.5, 128.5, 278.5, 308.5])
    // Bᵀ stored [2,3]: the same product with transB.
    let bT: [Float] = [7, 9, 11, 8, 10, 12]
    var d: [Float] = [0, 0, 0, 0]
    NaiveGEMM.sgemm(
      .none, .transpose, m: 2, n: 2, k: 3, alpha: 1, a: a, lda: 3, b: bT, ldb: 3, beta: 0, c: &d,
      ldc: 2)
    #expect(d == [58, 64, 139, 154])
  }

  @Test(arguments: [
    (BLAS.Transpose.none, BLAS.Transpose.none), (.none, .transpose), (.transpose, .none),
    (.transpose, .transpose),
  ])
  func blasMatchesNaive(transA: BLAS.Transpose, transB: BLAS.Transpose) {
    let (m, n, k) = (7, 5, 11)
    // Padded leading dimensions, so a kernel that ignores ld reads the wrong elements.
    let aRows = transA == .none ? m : k
    let lda = (transA == .none ? k : m) + 3
    let bRows = transB == .none ? k : n
    let ldb = (transB == .none ? n : k) + 2
    let ldc = n + 4
    let a = Self.random(rows: aRows, ld: lda, seed: 1)
    let b = Self.random(rows: bRows, ld: ldb, seed: 2)
    let c0 = Self.random(rows: m, ld: ldc, seed: 3)
    var fast = c0
    var slow = c0
    BLAS.sgemm(
      transA, transB, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda, b: b, ldb: ldb, beta: -1.25,
      c: &fast, ldc: ldc)
    NaiveGEMM.sgemm(
      transA, transB, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda, b: b, ldb: ldb, beta: -1.25,
      c: &slow, ldc: ldc)
    for i in 0..<m {
      for j in 0..<ldc {
        let (x, y) = (fast[i * ldc + j], slow[i * ldc + j])
        if j < n {
          #expect(abs(x - y) <= 1e-5 * max(1, abs(y)), "C[\(i),\(j)] blas \(x) naive \(y)")
          #expect(x != c0[i * ldc + j])
        } else {
          #expect(x == c0[i * ldc + j], "padding C[\(i),\(j)] must not be written")
        }
      }
    }
  }

  @Test func betaZeroIgnoresGarbageInC() {
    let a: [Float] = [1, 2, 3, 4]
    let b: [Float] = [1, 0, 0, 1]
    var c: [Float] = [.nan, .nan, .nan, .nan]
    BLAS.sgemm(
      .none, .none, m: 2, n: 2, k: 2, alpha: 1, a: a, lda: 2, b: b, ldb: 2, beta: 0, c: &c, ldc: 2)
    #expect(c == [1, 2, 3, 4])
    var d: [Float] = [.nan, .nan, .nan, .nan]
    NaiveGEMM.sgemm(
      .none, .none, m: 2, n: 2, k: 2, alpha: 1, a: a, lda: 2, b: b, ldb: 2, beta: 0, c: &d, ldc: 2)
    #expect(d == [1, 2, 3, 4])
  }

  @Test func setThreadCountAcceptsOne() {
    BLAS.setThreadCount(1)
  }
}
