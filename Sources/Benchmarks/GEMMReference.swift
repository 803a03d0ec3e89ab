import Dispatch
import Layers
import Tensors

/// This machine's `cblas_sgemm` on given shapes, measured alone (no training around it): the ceiling the
/// benchmark compares the training step's GEMMs against.
public enum GEMMReference {
  /// Median seconds per call of C = op(A)·op(B) (+ C when `accumulate`) for `site`'s shape and transposes,
  /// over `repeats` timed batches of calls lasting ≥ ~2 ms each, after one untimed batch.
  public static func secondsPerCall(
    _ site: StepProfile.GEMMSite, accumulate: Bool, repeats: Int = 7
  ) -> Double {
    let (m, n, k) = (site.m, site.n, site.k)
    let a = FloatBuffer(count: m * k)
    let b = FloatBuffer(count: k * n)
    let c = FloatBuffer(count: m * n)
    for i in 0..<a.count { a.pointer[i] = Float(i % 13) * 0.01 }
    for i in 0..<b.count { b.pointer[i] = Float(i % 7) * 0.01 }
    let lda = site.transposeA ? m : k
    let ldb = site.transposeB ? k : n
    let calls = max(1, Int(2e-3 / max(site.flops / 50e9, 1e-9)))
    func batch() -> Double {
      let start = DispatchTime.now().uptimeNanoseconds
      for _ in 0..<calls {
        BLAS.sgemm(
          site.transposeA ? .transpose : .none, site.transposeB ? .transpose : .none, m: m, n: n,
          k: k, alpha: 1,
          a: a.pointer, lda: lda, b: b.pointer, ldb: ldb, beta: accumulate ? 1 : 0, c: c.pointer,
          ldc: n)
        // Keep C bounded when accumulating.
        if accumulate { c.pointer[0] = 0 }
      }
      return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 / Double(calls)
    }
    _ = batch()
    return median((0..<repeats).map { _ in batch() }) ?? 0
  }
}
