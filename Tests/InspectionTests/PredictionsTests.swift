import Datasets
import Foundation
import Inspection
import Layers
import Testing

/// Predictions and the confusion matrix against hand computation on a tiny fixed model: one linear layer
/// 4 → 3 (no hidden layer), W and b chosen by hand, five samples with byte pixels.
struct PredictionsTests {
  // W [3, 4] row-major, then b [3] (nn.Linear's layout, as Sequential holds it).
  static let weights: [Float] = [
    1, 0, 0, 0,
    0, 2, 0, 0,
    0, 0, 0, 3,
  ]
  static let bias: [Float] = [0.5, 0, -0.25]
  /// Pixels as bytes: the model sees them as p / 255.
  static let pixels: [[UInt8]] = [
    [255, 0, 0, 0],  // logits (1.5, 0, -0.25): class 0
    [0, 255, 0, 0],  // (0.5, 2, -0.25): class 1
    [0, 0, 0, 255],  // (0.5, 0, 2.75): class 2
    [51, 51, 0, 51],  // (0.7, 0.4, 0.35): class 0
    [0, 0, 255, 0],  // (0.5, 0, -0.25): class 0
  ]
  static let labels: [UInt8] = [0, 1, 1, 0, 2]  // samples 2 and 4 are wrong

  static func fixture() -> (Sequential, Dataset) {
    let model = Sequential(spec: ModelSpec(layerSizes: [4, 3]), maxBatch: 500)
    model.parameters.copy(from: weights + bias)
    let dataset = Dataset(
      count: pixels.count, featureCount: 4, classCount: 3, pixels: pixels.flatMap { $0 }, labels: labels.map(Int32.init)
    )
    return (model, dataset)
  }

  /// The softmax of sample i's logits, by hand in Double: z = W x + b, p = exp(z) / Σ exp(z).
  static func handSoftmax(_ sample: Int) -> [Double] {
    let x = pixels[sample].map { Double($0) / 255 }
    let z = (0..<3).map { row in
      (0..<4).reduce(Double(bias[row])) { $0 + Double(weights[row * 4 + $1]) * x[$1] }
    }
    let e = z.map { exp($0) }
    return e.map { $0 / e.reduce(0, +) }
  }

  @Test("each row's ranked probabilities equal a softmax computed by hand")
  func probabilitiesMatchHandSoftmax() {
    let (model, dataset) = Self.fixture()
    let predictions = Predictor.predict(model: model, dataset: dataset, indices: [3, 0, 2])
    #expect(predictions.map(\.index) == [3, 0, 2])
    for prediction in predictions {
      let expected = Self.handSoftmax(prediction.index)
      let order = expected.indices.sorted { expected[$0] > expected[$1] }
      #expect(prediction.ranked.map(\.label) == order)
      for guess in prediction.ranked {
        // The model computes in Float: agreement to float rounding.
        #expect(abs(guess.probability - expected[guess.label]) < 1e-6, "sample \(prediction.index)")
      }
      #expect(abs(prediction.ranked.map(\.probability).reduce(0, +) - 1) < 1e-12)
    }
    // Sample 3 by hand: logits (0.7, 0.4, 0.35).
    let z = [0.7, 0.4, 0.35]
    let p0 = exp(z[0]) / z.map(exp).reduce(0, +)
    #expect(abs(predictions[0].ranked[0].probability - p0) < 1e-6)
    #expect(predictions[0].ranked.map(\.label) == [0, 1, 2])
  }

  @Test("misclassified: exactly the samples whose argmax differs from the label")
  func misclassifiedAreTheWrongOnes() {
    let (model, dataset) = Self.fixture()
    let all = Predictor.predictAll(model: model, dataset: dataset)
    #expect(all.filter { !$0.isCorrect }.map(\.index) == [2, 4])
    #expect(all.map(\.predicted) == [0, 1, 2, 0, 0])
  }

  @Test("the confusion matrix: rows true, columns predicted; sums, diagonal and per-class scores by hand")
  func confusionMatrixByHand() {
    let (model, dataset) = Self.fixture()
    let matrix = ConfusionMatrix(Predictor.predictAll(model: model, dataset: dataset), classCount: 3)
    // true 0: predicted 0, 0; true 1: 1, 2; true 2: 0.
    #expect(matrix.counts == [[2, 0, 0], [0, 1, 1], [1, 0, 0]])
    #expect(matrix.total == 5)
    #expect(matrix.correct == 3)
    let class0 = matrix.scores(of: 0)
    #expect(class0.precision == 2.0 / 3 && class0.recall == 1 && abs(class0.f1 - 0.8) < 1e-12)
    let class1 = matrix.scores(of: 1)
    #expect(class1.precision == 1 && class1.recall == 0.5 && abs(class1.f1 - 2.0 / 3) < 1e-12)
    let class2 = matrix.scores(of: 2)
    // Predicted once (wrongly), never right: precision 0, recall 0, F1 0.
    #expect(class2.precision == 0 && class2.recall == 0 && class2.f1 == 0)
    let never = ConfusionMatrix([], classCount: 2).scores(of: 0)
    #expect(never.precision.isNaN && never.recall.isNaN && never.f1.isNaN)
    let text = matrix.text(names: ["a", "b", "c"])
    #expect(text.contains("accuracy 0.6000 (3 of 5 right)"), "\(text)")
  }

  @Test("class names: Fashion-MNIST's ten garments, MNIST's digits, synthetic's numbers")
  func classNames() {
    #expect(
      ClassNames.names(for: .fashionMNIST, count: 10) == [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
      ])
    #expect(ClassNames.names(for: .mnist, count: 10) == (0..<10).map(String.init))
    #expect(ClassNames.names(for: .synthetic, count: 3) == ["class 0", "class 1", "class 2"])
  }

  @Test("a tie keeps the lower label first, as the training's argmax does")
  func tiesKeepLabelOrder() {
    let model = Sequential(spec: ModelSpec(layerSizes: [1, 3]), maxBatch: 500)
    model.parameters.copy(from: [0, 0, 0, 1, 1, 0])  // W = 0, b = (1, 1, 0): classes 0 and 1 tie
    let dataset = Dataset(count: 1, featureCount: 1, classCount: 3, pixels: [7], labels: [1])
    let prediction = Predictor.predict(model: model, dataset: dataset, indices: [0])[0]
    #expect(prediction.ranked.map(\.label) == [0, 1, 2])
    #expect(!prediction.isCorrect)
  }
}
