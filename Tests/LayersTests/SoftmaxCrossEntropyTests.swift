import Foundation
import Testing

@testable import Layers
@testable import Tensors

@Suite struct SoftmaxCrossEntropyTests {
  @Test func gradientMatchesFiniteDifferencesWithScale() {
    let (batch, classes) = (4, 5)
    let logits = Reference.randomFloats(batch * classes, seed: 21, in: -3...3)
    let labels: [Int32] = [0, 4, 2, 2]
    let scale: Float = 0.25
    var dLogits = [Float](repeating: .nan, count: batch * classes)
    let result = SoftmaxCrossEntropy.forwardBackward(
      logits: logits, labels: labels, batch: batch, classes: classes, gradientScale: scale,
      dLogits: &dLogits)
    let intLabels = labels.map(Int.init)
    let f = { (z: [Double]) in
      Reference.crossEntropySum(logits: z, labels: intLabels, classes: classes)
    }
    let g = Reference.gradient(of: f, at: logits.map(Double.init))
    for i in g.indices {
      #expect(isClose(Double(dLogits[i]), Double(scale) * g[i], absolute: 1e-6), "dLogits[\(i)]")
    }
    #expect(isClose(result.lossSum, f(logits.map(Double.init)), absolute: 1e-5, relative: 1e-6))

    // In place gives the same numbers.
    var inPlace = logits
    let again = SoftmaxCrossEntropy.forwardBackward(
      logits: inPlace, labels: labels, batch: batch, classes: classes, gradientScale: scale,
      dLogits: &inPlace)
    #expect(inPlace == dLogits && again == result)
    #expect(
      SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: classes)
        == result)
  }

  @Test func uniformLogitsGiveLogClasses() {
    let classes = 10
    let logits = [Float](repeating: 3.5, count: 2 * classes)
    var d = [Float](repeating: 0, count: 2 * classes)
    let result = SoftmaxCrossEntropy.forwardBackward(
      logits: logits, labels: [3, 0], batch: 2, classes: classes, gradientScale: 1, dLogits: &d)
    #expect(isClose(result.lossSum, 2 * log(10.0), absolute: 1e-6, relative: 1e-6))
    // Ties: the first maximum (class 0) is the prediction.
    #expect(result.correct == 1)
    #expect(abs(d[0] - 0.1) < 1e-7 && abs(d[3] - (0.1 - 1)) < 1e-7 && abs(d[10] - (0.1 - 1)) < 1e-7)
  }

  @Test func extremeLogitsStayFinite() {
    // Row 0: label is the huge logit → loss 0; row 1: label is the tiny one → loss 2000.
    let logits: [Float] = [1000, -1000, 1000, -1000]
    var d = [Float](repeating: 0, count: 4)
    let result = SoftmaxCrossEntropy.forwardBackward(
      logits: logits, labels: [0, 1], batch: 2, classes: 2, gradientScale: 1, dLogits: &d)
    #expect(result.lossSum.isFinite)
    #expect(isClose(result.lossSum, 2000, absolute: 1e-3, relative: 0))
    #expect(result.correct == 1)
    #expect(d == [0, 0, 1, -1])
    // Two huge equal logits: log 2, no inf − inf.
    let tie = SoftmaxCrossEntropy.evaluate(logits: [1e30, 1e30], labels: [1], batch: 1, classes: 2)
    #expect(isClose(tie.lossSum, log(2.0), absolute: 1e-6, relative: 0) && tie.correct == 0)
  }
}
