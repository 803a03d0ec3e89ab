/// What one batch contributed to the loss: the summed loss and the number of correct predictions.
public struct BatchResult: Equatable, Sendable {
  /// Σ_i ℓ_i over the batch, natural log.
  public var lossSum: Double
  /// Samples whose first maximal logit is the label.
  public var correct: Int

  public init(lossSum: Double, correct: Int) {
    self.lossSum = lossSum
    self.correct = correct
  }
}
