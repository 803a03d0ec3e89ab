import Tensors

/// A fully connected layer y = x·Wᵀ + b with PyTorch's nn.Linear layout (W is [out, in], row-major).
public enum Linear {
  /// y = x·Wᵀ + b.
  /// - x: [batch, inFeatures]; weight: [outFeatures, inFeatures]; bias: [outFeatures]; y: [batch, outFeatures].
  public static func forward(
    x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    y: UnsafeMutablePointer<Float>, batch: Int, inFeatures: Int, outFeatures: Int
  ) {
    BLAS.sgemm(
      .none, .transpose, m: batch, n: outFeatures, k: inFeatures, alpha: 1,
      a: x, lda: inFeatures, b: weight, ldb: inFeatures, beta: 0, c: y, ldc: outFeatures)
    Elementwise.addRowVector(bias, to: y, rows: batch, columns: outFeatures)
  }

  /// y = max(x·Wᵀ + b, 0): the GEMM, then bias and ReLU fused in one pass over y.
  /// Shapes as in `forward`.
  public static func forwardReLU(
    x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    y: UnsafeMutablePointer<Float>, batch: Int, inFeatures: Int, outFeatures: Int
  ) {
    BLAS.sgemm(
      .none, .transpose, m: batch, n: outFeatures, k: inFeatures, alpha: 1,
      a: x, lda: inFeatures, b: weight, ldb: inFeatures, beta: 0, c: y, ldc: outFeatures)
    ReLU.addBiasForward(bias: bias, y: y, batch: batch, features: outFeatures)
  }

  /// Gradients of y = x·Wᵀ + b given dy = ∂L/∂y:
  /// dWeight += dyᵀ·x, dBias += Σ_rows dy, and dx = dy·W (overwritten, not accumulated) when dx is non-nil
  /// (the first layer needs no dx).
  /// - x: [batch, inFeatures]; weight, dWeight: [outFeatures, inFeatures]; dBias: [outFeatures];
  ///   dy: [batch, outFeatures]; dx: [batch, inFeatures], must not alias x or dy.
  public static func backward(
    x: UnsafePointer<Float>, weight: UnsafePointer<Float>, dy: UnsafePointer<Float>,
    dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>,
    dx: UnsafeMutablePointer<Float>?, batch: Int, inFeatures: Int, outFeatures: Int
  ) {
    BLAS.sgemm(
      .transpose, .none, m: outFeatures, n: inFeatures, k: batch, alpha: 1,
      a: dy, lda: outFeatures, b: x, ldb: inFeatures, beta: 1, c: dWeight, ldc: inFeatures)
    Elementwise.accumulateColumnSums(of: dy, rows: batch, columns: outFeatures, into: dBias)
    if let dx {
      BLAS.sgemm(
        .none, .none, m: batch, n: inFeatures, k: outFeatures, alpha: 1,
        a: dy, lda: outFeatures, b: weight, ldb: inFeatures, beta: 0, c: dx, ldc: inFeatures)
    }
  }
}
