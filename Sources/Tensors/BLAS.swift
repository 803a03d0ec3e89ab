import COpenBLAS

/// Single-precision BLAS through OpenBLAS, row-major only.
public enum BLAS {
  /// Sets the number of threads OpenBLAS uses (`openblas_set_num_threads`). One per rank is the norm
  /// under MPI: more only oversubscribes the cores the other ranks run on.
  public static func setThreadCount(_ n: Int) {
    precondition(n >= 1, "BLAS thread count must be at least 1, got \(n)")
    openblas_set_num_threads(Int32(n))
  }

  /// Whether a GEMM operand is used as stored or transposed.
  public enum Transpose: Sendable {
    case none, transpose
  }

  /// C[m,n] = alpha·op(A)[m,k]·op(B)[k,n] + beta·C; all row-major with leading dimensions.
  ///
  /// Storage: A is [m, lda] (lda ≥ k) when `transA == .none`, else [k, lda] (lda ≥ m);
  /// B is [k, ldb] (ldb ≥ n) when `transB == .none`, else [n, ldb] (ldb ≥ k); C is [m, ldc] (ldc ≥ n).
  /// With beta == 0, C is not read (NaNs in it do not propagate).
  @inline(__always)
  public static func sgemm(
    _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    GEMMContract.check(transA, transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
    cblas_sgemm(
      CblasRowMajor, transA.cblas, transB.cblas, blasint(m), blasint(n), blasint(k), alpha,
      a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
  }
}

extension BLAS.Transpose {
  @inline(__always)
  var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// The argument checks shared by `BLAS.sgemm` and `NaiveGEMM.sgemm`, so both reject the same mistakes.
enum GEMMContract {
  @inline(__always)
  static func check(
    _ transA: BLAS.Transpose, _ transB: BLAS.Transpose, m: Int, n: Int, k: Int, lda: Int, ldb: Int,
    ldc: Int
  ) {
    precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative dimension m=\(m) n=\(n) k=\(k)")
    precondition(lda >= max(1, transA == .none ? k : m), "sgemm: lda \(lda) too small")
    precondition(ldb >= max(1, transB == .none ? n : k), "sgemm: ldb \(ldb) too small")
    precondition(ldc >= max(1, n), "sgemm: ldc \(ldc) too small")
  }
}
