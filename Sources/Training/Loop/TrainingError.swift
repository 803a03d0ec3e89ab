/// A failure while training (not the user's input): exit status 1, or 3 for divergence.
public enum TrainingError: Error, CustomStringConvertible {
  /// The loss or the gradient stopped being finite.
  case diverged(step: Int, learningRate: Double, loss: Double, checkpoint: String?)
  case io(path: String, message: String)

  public var description: String {
    switch self {
    case .diverged(let step, let learningRate, let loss, let checkpoint):
      var text =
        "training diverged at step \(step): loss is \(loss) with lr \(learningRate). "
        + "Lower --lr, lengthen --warmup-epochs, or use --lr-scaling sqrt."
      if let checkpoint { text += " The newest good checkpoint is \(checkpoint)." }
      return text
    case .io(let path, let message):
      return "\(path): \(message)"
    }
  }
}
