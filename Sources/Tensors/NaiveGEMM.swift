/// The test oracle for `BLAS.sgemm`: the same contract as a plain triple loop accumulating in Double.
///
/// Slow and obviously correct; never used on a training path.
public enum NaiveGEMM {
  /// C[m,n] = alpha·op(A)[m,k]·op(B)[k,n] + beta·C; all row-major with leading dimensions
  /// (storage as documented on `BLAS.sgemm`). With beta == 0, C is not read.
  public static func sgemm(
    _ transA: BLAS.Transpose, _ transB: BLAS.Transpose, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    GEMMContract.check(transA, transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
    for i in 0..<m {
      for j in 0..<n {
        var sum = 0.0
        for p in 0..<k {
          let aip = transA == .none ? a[i * lda + p] : a[p * lda + i]
          let bpj = transB == .none ? b[p * ldb + j] : b[j * ldb + p]
          sum += Double(aip) * Double(bpj)
        }
        let previous = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
        c[i * ldc + j] = Float(Double(alpha) * sum + previous)
      }
    }
  }
}
