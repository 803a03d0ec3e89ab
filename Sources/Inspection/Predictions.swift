import Datasets
import Foundation
import Layers
import Training

/// What a model says about one test sample: its classes ranked by probability (softmax of the logits).
public struct Prediction: Equatable, Sendable {
  public struct Guess: Equatable, Sendable {
    public var label: Int
    public var probability: Double
  }

  /// The sample's index in the test set.
  public var index: Int
  public var trueLabel: Int
  /// Every class, most likely first; ties keep the lower label first (as the training's argmax does).
  public var ranked: [Guess]

  public var predicted: Int { ranked[0].label }
  public var isCorrect: Bool { predicted == trueLabel }
}

/// Runs a model over test samples and ranks its classes for each.
public enum Predictor {
  /// The prediction for each of `indices` (each in 0..<dataset.count), in that order.
  /// The softmax is computed in Double from the Float logits: p_k = exp(z_k − max z) / Σ_j exp(z_j − max z).
  /// `preprocessing`'s normalisation applies (its random parts are training's only).
  public static func predict(
    model: Sequential, dataset: Dataset, indices: [Int], preprocessing: Preprocessing = Preprocessing()
  ) -> [Prediction] {
    let classes = model.spec.classCount
    // As many samples per forward as the model holds (`SavedModel` makes it for the spec's evaluation batch).
    let batch = model.maxBatch
    let assembler = BatchAssembler(
      featureCount: dataset.featureCount, maxBatch: batch, sampleShape: dataset.sampleShape,
      preprocessing: Preprocessing(normalization: preprocessing.normalization))
    var predictions: [Prediction] = []
    predictions.reserveCapacity(indices.count)
    var start = 0
    while start < indices.count {
      let chunk = indices[start..<min(start + batch, indices.count)].map { Int32($0) }
      chunk.withUnsafeBufferPointer { assembler.assemble(from: dataset, indices: $0) }
      let logits = model.evaluationLogits(input: assembler.inputs, batch: chunk.count)
      for (offset, index) in chunk.enumerated() {
        let row = (0..<classes).map { Double(logits[offset * classes + $0]) }
        predictions.append(
          Prediction(
            index: Int(index), trueLabel: Int(dataset.labels[Int(index)]), ranked: ranked(softmax(row))))
      }
      start += chunk.count
    }
    return predictions
  }

  /// The prediction for every test sample (for the confusion matrix and `--misclassified`).
  public static func predictAll(
    model: Sequential, dataset: Dataset, preprocessing: Preprocessing = Preprocessing()
  ) -> [Prediction] {
    predict(model: model, dataset: dataset, indices: Array(0..<dataset.count), preprocessing: preprocessing)
  }

  static func softmax(_ logits: [Double]) -> [Double] {
    let maximum = logits.max() ?? 0
    let exponentials = logits.map { exp($0 - maximum) }
    let sum = exponentials.reduce(0, +)
    return exponentials.map { $0 / sum }
  }

  /// Labels by probability, highest first; a stable sort keeps ties in label order.
  static func ranked(_ probabilities: [Double]) -> [Prediction.Guess] {
    probabilities.indices.sorted { a, b in
      probabilities[a] != probabilities[b] ? probabilities[a] > probabilities[b] : a < b
    }.map { Prediction.Guess(label: $0, probability: probabilities[$0]) }
  }
}
