/// `cblas_sgemm` under this process's OpenBLAS kernels against `NaiveGEMM`'s double-precision loop, at the shapes
/// and transpositions the layers call, so that every kernel family a CPU runs can be checked (`ddp-train
/// check-blas`, one process per family, since OpenBLAS picks its family once per process).
public enum GEMMCheck {
  /// One sgemm call: C[m,n] = alpha·op(A)·op(B) + beta·C, with each leading dimension padded by `padding`
  /// (a kernel that ignores ld reads the wrong elements).
  public struct Case: Sendable, CustomStringConvertible {
    public var transA: BLAS.Transpose
    public var transB: BLAS.Transpose
    public var m: Int, n: Int, k: Int
    public var alpha: Float = 1
    public var beta: Float = 0
    public var padding = 0
    /// Where the layers make this call, for the report.
    public var site: String

    public var description: String {
      let op = { (t: BLAS.Transpose) in t == .none ? "N" : "T" }
      return "\(op(transA))\(op(transB)) \(m)×\(n)×\(k)" + (site.isEmpty ? "" : " (\(site))")
    }
  }

  /// Every transposition at a small odd shape, then the calls of the MLP (B=64) and of the CNN's second
  /// convolution and first linear layer, up to an inner dimension of 3136.
  public static let cases: [Case] = {
    var cases: [Case] = []
    for transA in [BLAS.Transpose.none, .transpose] {
      for transB in [BLAS.Transpose.none, .transpose] {
        cases.append(
          Case(transA: transA, transB: transB, m: 7, n: 5, k: 11, alpha: 0.75, beta: -1.25, padding: 3, site: ""))
        cases.append(Case(transA: transA, transB: transB, m: 33, n: 47, k: 129, beta: 1, site: ""))
      }
    }
    cases += [
      Case(transA: .none, transB: .transpose, m: 64, n: 256, k: 784, site: "Linear(784,256) forward"),
      Case(transA: .transpose, transB: .none, m: 256, n: 784, k: 64, beta: 1, site: "Linear(784,256) weight gradient"),
      Case(transA: .none, transB: .none, m: 64, n: 784, k: 256, site: "Linear(784,256) input gradient"),
      Case(transA: .none, transB: .none, m: 64, n: 196, k: 288, site: "Conv2d(32,64,3) forward"),
      Case(transA: .none, transB: .transpose, m: 64, n: 288, k: 196, beta: 1, site: "Conv2d(32,64,3) weight gradient"),
      Case(transA: .transpose, transB: .none, m: 288, n: 196, k: 64, site: "Conv2d(32,64,3) input gradient"),
      Case(transA: .none, transB: .transpose, m: 64, n: 128, k: 3136, site: "Linear(3136,128) forward"),
      Case(
        transA: .transpose, transB: .none, m: 128, n: 3136, k: 64, beta: 1, site: "Linear(3136,128) weight gradient"),
    ]
    return cases
  }()

  /// The worst error of one call: max over C of |C_blas − C_exact| / (|alpha|·Σ_p |A_ip·B_pj| + |beta·C0_ij|), the
  /// error relative to the size of what was summed (float32 blocked sums stay within a few 1e-7 of it; a wrong
  /// element or an ignored ld is of order 1). Padding columns of C must stay untouched: +infinity if one changed.
  public static func worstError(_ c: Case, seed: UInt64) -> Double {
    var generator = Xoshiro256(seed: seed)
    let aRows = c.transA == .none ? c.m : c.k
    let lda = (c.transA == .none ? c.k : c.m) + c.padding
    let bRows = c.transB == .none ? c.k : c.n
    let ldb = (c.transB == .none ? c.n : c.k) + c.padding
    let ldc = c.n + c.padding
    let a = (0..<(aRows * lda)).map { _ in generator.nextFloat(in: -1, 1) }
    let b = (0..<(bRows * ldb)).map { _ in generator.nextFloat(in: -1, 1) }
    let c0 = (0..<(c.m * ldc)).map { _ in generator.nextFloat(in: -1, 1) }
    var fast = c0
    var exact = c0
    var scale = c0.map(abs)
    BLAS.sgemm(
      c.transA, c.transB, m: c.m, n: c.n, k: c.k, alpha: c.alpha, a: a, lda: lda, b: b, ldb: ldb, beta: c.beta,
      c: &fast, ldc: ldc)
    NaiveGEMM.sgemm(
      c.transA, c.transB, m: c.m, n: c.n, k: c.k, alpha: c.alpha, a: a, lda: lda, b: b, ldb: ldb, beta: c.beta,
      c: &exact, ldc: ldc)
    NaiveGEMM.sgemm(
      c.transA, c.transB, m: c.m, n: c.n, k: c.k, alpha: abs(c.alpha), a: a.map(abs), lda: lda, b: b.map(abs),
      ldb: ldb, beta: abs(c.beta), c: &scale, ldc: ldc)
    var worst = 0.0
    for row in 0..<c.m {
      for column in 0..<ldc {
        let index = row * ldc + column
        if column >= c.n {
          if fast[index].bitPattern != c0[index].bitPattern { return .infinity }
          continue
        }
        let error = abs(Double(fast[index]) - Double(exact[index])) / max(Double(scale[index]), 1e-30)
        worst = max(worst, error.isNaN ? .infinity : error)
      }
    }
    return worst
  }
}
