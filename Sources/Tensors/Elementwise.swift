import CKernels

/// Elementwise kernels over raw Float pointers.
///
/// Each loop walks pointers with wrapping arithmetic only, so the optimiser can vectorise it; matrices are
/// row-major and sliced into rows before the inner loop.
public enum Elementwise {
  /// x[i] *= alpha for i in 0..<count.
  @inline(__always)
  public static func scale(_ x: UnsafeMutablePointer<Float>, count: Int, by alpha: Float) {
    var i = 0
    while i < count {
      x[i] = x[i] * alpha
      i = i &+ 1
    }
  }

  /// y[i] += alpha·x[i] for i in 0..<count (BLAS axpy).
  @inline(__always)
  public static func axpy(
    alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, count: Int
  ) {
    var i = 0
    while i < count {
      y[i] = y[i] + alpha * x[i]
      i = i &+ 1
    }
  }

  /// matrix[r, c] += row[c]: matrix is [rows, columns], row is [columns] (a bias broadcast over a batch).
  @inline(__always)
  public static func addRowVector(
    _ row: UnsafePointer<Float>, to matrix: UnsafeMutablePointer<Float>, rows: Int, columns: Int
  ) {
    var r = 0
    var line = matrix
    while r < rows {
      var c = 0
      while c < columns {
        line[c] = line[c] + row[c]
        c = c &+ 1
      }
      line = line.advanced(by: columns)
      r = r &+ 1
    }
  }

  /// accumulator[c] += Σ_r matrix[r, c]: matrix is [rows, columns], accumulator is [columns]
  /// (a bias gradient summed over a batch).
  @inline(__always)
  public static func accumulateColumnSums(
    of matrix: UnsafePointer<Float>, rows: Int, columns: Int,
    into accumulator: UnsafeMutablePointer<Float>
  ) {
    var r = 0
    var line = matrix
    while r < rows {
      var c = 0
      while c < columns {
        accumulator[c] = accumulator[c] + line[c]
        c = c &+ 1
      }
      line = line.advanced(by: columns)
      r = r &+ 1
    }
  }

  /// Σ values[i]², accumulated in Double in index order (LARS's layer norms, the gradient noise scale).
  public static func sumOfSquares(_ values: UnsafePointer<Float>, count: Int) -> Double {
    var sum = 0.0
    var i = 0
    while i < count {
      sum += Double(values[i]) * Double(values[i])
      i = i &+ 1
    }
    return sum
  }

  /// True when no element of values[0..<count] is NaN or ±Inf: an integer max over the exponent bits (a Float
  /// sum cannot be reordered, so a `+= x·0` probe runs one element per add latency), in the C kernel built for
  /// the CPU's widest vectors.
  public static func allFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
    ddp_all_finite(values, count)
  }

  /// out[i] += part[i] for i in 0..<count: one step of a rank-order sum (same rounding on every CPU).
  public static func add(_ part: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int) {
    ddp_add(out, part, count)
  }

  /// dst[i] = source[i] for i in 0..<count with non-temporal stores (to memory, bypassing this core's cache), then
  /// a full fence; dst 64-byte aligned. For a buffer another core reads next (`SharedMemoryPairReducer`).
  public static func streamCopy(_ source: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count: Int) {
    precondition(Int(bitPattern: dst) % 64 == 0, "streamCopy needs a 64-byte aligned destination")
    ddp_stream_copy(dst, source, count)
  }

  /// out[i] = a[i] + b[i] for i in 0..<count, one pass (same rounding on every CPU); out aliases neither input.
  public static func sum(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int
  ) {
    ddp_sum(out, a, b, count)
  }
}
