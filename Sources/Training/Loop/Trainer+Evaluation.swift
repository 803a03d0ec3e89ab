import Communication
import Datasets
import Layers

extension Trainer {
  /// Test loss and accuracy of the current parameters; the test set is split across ranks in contiguous
  /// chunks and the sums all-reduced, so every rank gets the same numbers. Collective.
  public func evaluate(_ dataset: Dataset) throws -> (loss: Double, accuracy: Double) {
    try Self.evaluate(
      model: model, dataset: dataset, communicator: communicator, watchdog: watchdog, step: step,
      preprocessing: configuration.preprocessing)
  }

  static func evaluate(
    model: Sequential, dataset: Dataset, communicator: Communicator, watchdog: Watchdog?, step: Int,
    preprocessing: Preprocessing
  ) throws -> (loss: Double, accuracy: Double) {
    let lower = dataset.count * communicator.rank / communicator.size
    let upper = dataset.count * (communicator.rank + 1) / communicator.size
    // As many samples per forward as the model holds (at least its spec's evaluation batch).
    let batch = model.maxBatch
    // The normalisation only: the random crop and flip are for training.
    let assembler = BatchAssembler(
      featureCount: dataset.featureCount, maxBatch: batch, sampleShape: dataset.sampleShape,
      preprocessing: Preprocessing(normalization: preprocessing.normalization))
    var sums = [0.0, 0.0]
    var start = lower
    while start < upper {
      watchdog?.beat(step: step, phase: .compute("evaluating the test set"))
      let end = min(start + batch, upper)
      assembler.assemble(from: dataset, range: start..<end)
      let result = model.evaluate(input: assembler.inputs, labels: assembler.labels, batch: end - start)
      sums[0] += result.lossSum
      sums[1] += Double(result.correct)
      start = end
    }
    watchdog?.beat(step: step, phase: .collective("evaluation all-reduce"))
    try communicator.allReduceSum(&sums)
    return (sums[0] / Double(dataset.count), sums[1] / Double(dataset.count))
  }

  /// Test loss and accuracy of `model` (for `eval`), split across the ranks of `communicator`.
  public static func evaluate(
    model: Sequential, dataset: Dataset, communicator: Communicator, preprocessing: Preprocessing = Preprocessing()
  ) throws -> (loss: Double, accuracy: Double) {
    try evaluate(
      model: model, dataset: dataset, communicator: communicator, watchdog: nil, step: 0, preprocessing: preprocessing)
  }
}
