#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Softmax followed by cross-entropy against integer labels (natural log), as PyTorch's F.cross_entropy
/// with reduction "sum". Stable for any finite logits: each row is shifted by its max before exp, and the
/// loss is computed as log-sum-exp, so nothing overflows and log never sees 0.
public enum SoftmaxCrossEntropy {
  /// Loss and gradient in one pass per row:
  /// ℓ_i = log Σ_j exp(logits[i, j]) − logits[i, label_i], dLogits = gradientScale·(softmax(logits) − onehot).
  /// With `smoothing` ε > 0 (nn.CrossEntropyLoss(label_smoothing=ε)) the target is (1 − ε)·onehot + ε/C:
  /// ℓ_i = (1 − ε)·(lse − z_label) + ε·(lse − mean_j z_j), dLogits = gradientScale·(softmax − (1 − ε)·onehot − ε/C).
  /// - logits, dLogits: [batch, classes]; dLogits may equal logits (in place: each row is read before written).
  /// - labels: [batch], each in 0..<classes.
  /// - Returns: Σ_i ℓ_i (summed in Double) and how many rows' first maximal logit is the label.
  @discardableResult
  public static func forwardBackward(
    logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, classes: Int,
    gradientScale: Float, smoothing: Float = 0, dLogits: UnsafeMutablePointer<Float>
  ) -> BatchResult {
    let uniformShare = gradientScale * (smoothing / Float(classes))
    let labelShare = gradientScale * (1 - smoothing)
    var lossSum = 0.0
    var correct = 0
    var r = 0
    var row = logits
    var dRow = dLogits
    while r < batch {
      let label = Int(labels[r])
      precondition(label >= 0 && label < classes, "label \(label) out of range 0..<\(classes)")
      let (maximum, argmax) = maxAndArgmax(row, count: classes)
      let labelLogit = row[label]
      // Pass 2: unnormalised probabilities into dRow (read row[c] before writing dRow[c]).
      var sum: Float = 0
      var logitSum = 0.0
      var c = 0
      while c < classes {
        logitSum += Double(row[c])
        let e = expf(row[c] - maximum)
        dRow[c] = e
        sum += e
        c = c &+ 1
      }
      let factor = gradientScale / sum
      c = 0
      if smoothing == 0 {
        while c < classes {
          dRow[c] = dRow[c] * factor
          c = c &+ 1
        }
        dRow[label] -= gradientScale
        lossSum += log(Double(sum)) + Double(maximum - labelLogit)
      } else {
        while c < classes {
          dRow[c] = dRow[c] * factor - uniformShare
          c = c &+ 1
        }
        dRow[label] -= labelShare
        let logSumExp = log(Double(sum)) + Double(maximum)
        let epsilon = Double(smoothing)
        lossSum += logSumExp - (1 - epsilon) * Double(labelLogit) - epsilon * logitSum / Double(classes)
      }
      if argmax == label { correct &+= 1 }
      row = row.advanced(by: classes)
      dRow = dRow.advanced(by: classes)
      r = r &+ 1
    }
    return BatchResult(lossSum: lossSum, correct: correct)
  }

  /// The same loss sum and correct count as `forwardBackward`, without a gradient.
  /// - logits: [batch, classes]; labels: [batch], each in 0..<classes.
  public static func evaluate(
    logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, classes: Int
  ) -> BatchResult {
    var lossSum = 0.0
    var correct = 0
    var r = 0
    var row = logits
    while r < batch {
      let label = Int(labels[r])
      precondition(label >= 0 && label < classes, "label \(label) out of range 0..<\(classes)")
      let (maximum, argmax) = maxAndArgmax(row, count: classes)
      var sum: Float = 0
      var c = 0
      while c < classes {
        sum += expf(row[c] - maximum)
        c = c &+ 1
      }
      lossSum += log(Double(sum)) + Double(maximum - row[label])
      if argmax == label { correct &+= 1 }
      row = row.advanced(by: classes)
      r = r &+ 1
    }
    return BatchResult(lossSum: lossSum, correct: correct)
  }

  /// The largest value of row[0..<count] and the index of its first occurrence.
  @inline(__always)
  static func maxAndArgmax(_ row: UnsafePointer<Float>, count: Int) -> (Float, Int) {
    var maximum = row[0]
    var argmax = 0
    var c = 1
    while c < count {
      if row[c] > maximum {
        maximum = row[c]
        argmax = c
      }
      c = c &+ 1
    }
    return (maximum, argmax)
  }
}
