import Foundation
import Tensors

/// An independent Double re-implementation of the MLP, softmax cross-entropy and central differences,
/// written from the definitions (no shared code with the Layers module).
enum Reference {
  /// Σ_i of softmax cross-entropy of logits rows (naive form, Double; fine for moderate logits).
  static func crossEntropySum(logits: [Double], labels: [Int], classes: Int) -> Double {
    var total = 0.0
    for (i, label) in labels.enumerated() {
      let row = logits[(i * classes)..<((i + 1) * classes)]
      let logSumExp = log(row.map { exp($0) }.reduce(0, +))
      total += logSumExp - row[row.startIndex + label]
    }
    return total
  }

  /// The MLP's logits for `batch` inputs; parameters in the PyTorch state_dict layout.
  static func logits(parameters: [Double], sizes: [Int], input: [Double], batch: Int) -> [Double] {
    var activation = input
    var offset = 0
    for l in 0..<(sizes.count - 1) {
      let (fanIn, fanOut) = (sizes[l], sizes[l + 1])
      let weightOffset = offset
      let biasOffset = offset + fanOut * fanIn
      offset = biasOffset + fanOut
      var next = [Double](repeating: 0, count: batch * fanOut)
      for i in 0..<batch {
        for o in 0..<fanOut {
          var z = parameters[biasOffset + o]
          for j in 0..<fanIn {
            z += parameters[weightOffset + o * fanIn + j] * activation[i * fanIn + j]
          }
          next[i * fanOut + o] = l < sizes.count - 2 ? max(z, 0) : z
        }
      }
      activation = next
    }
    return activation
  }

  static func loss(parameters: [Double], sizes: [Int], input: [Double], labels: [Int]) -> Double {
    let z = logits(parameters: parameters, sizes: sizes, input: input, batch: labels.count)
    return crossEntropySum(logits: z, labels: labels, classes: sizes.last!)
  }

  /// ∂f/∂x_i by central differences, for every i.
  static func gradient(of f: ([Double]) -> Double, at x: [Double], epsilon: Double = 1e-6)
    -> [Double]
  {
    (0..<x.count).map { i in
      var plus = x
      var minus = x
      plus[i] += epsilon
      minus[i] -= epsilon
      return (f(plus) - f(minus)) / (2 * epsilon)
    }
  }

  static func randomFloats(_ count: Int, seed: UInt64, in range: ClosedRange<Float> = -1...1)
    -> [Float]
  {
    var generator = Xoshiro256(seed: seed, stream: 99)
    return (0..<count).map { _ in generator.nextFloat(in: range.lowerBound, range.upperBound) }
  }
}

/// |actual − expected| ≤ absolute + relative·|expected|.
func isClose(_ actual: Double, _ expected: Double, absolute: Double = 1e-4, relative: Double = 1e-3)
  -> Bool
{
  abs(actual - expected) <= absolute + relative * abs(expected)
}
