/// The rectifier max(z, 0), with the bias add fused in where it follows a GEMM.
public enum ReLU {
  /// y[i] = max(x[i], 0) for i in 0..<count; y may equal x (in place).
  @inline(__always)
  public static func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i < count {
      let v = x[i]
      y[i] = v > 0 ? v : 0
      i = i &+ 1
    }
  }

  /// y[r, c] = max(y[r, c] + bias[c], 0), in place: y is [batch, features] (a GEMM's output), bias [features].
  @inline(__always)
  public static func addBiasForward(
    bias: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, batch: Int, features: Int
  ) {
    var r = 0
    var row = y
    while r < batch {
      var c = 0
      while c < features {
        let v = row[c] + bias[c]
        row[c] = v > 0 ? v : 0
        c = c &+ 1
      }
      row = row.advanced(by: features)
      r = r &+ 1
    }
  }

  /// dx[i] = y[i] > 0 ? dy[i] : 0, where y = ReLU's output (y > 0 exactly where the input was > 0).
  /// dx may equal dy (in place). All have `count` elements.
  @inline(__always)
  public static func backward(
    y: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, count: Int
  ) {
    var i = 0
    while i < count {
      // Both loads unconditional, so the choice is a select the loop vectoriser can use, not a branch.
      let gradient = dy[i]
      dx[i] = y[i] > 0 ? gradient : 0
      i = i &+ 1
    }
  }
}
