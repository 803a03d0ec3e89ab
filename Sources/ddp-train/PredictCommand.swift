import ArgumentParser
import Datasets
import Foundation
import Inspection
import MPICommunication
import Training

/// `ddp-train predict --checkpoint DIR`: what a saved model says about chosen test samples, one row each, and
/// optionally a picture of them with their labels.
struct PredictCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "predict",
    abstract: "Show a saved model's predictions for test samples (text, JSON, or a picture of them).",
    discussion: """
      Chooses the first --count test samples (10 by default), or those of --indices, or the misclassified ones
      (all of them, or the first --count). One row each: index, true class, predicted class and its probability,
      the runner-up (or the --top K most likely classes), and whether it is right. Class names are the dataset's.
      --image FILE.png (or .svg) draws the samples, enlarged, with their true and predicted labels and the wrong
      ones marked in red. Under mpirun, rank 0 does it all.
      """)

  @OptionGroup var source: SavedModelOptions
  @Option(help: "How many samples: the first N of the test set, or of the misclassified ones (default 10).")
  var count: Int?
  @Option(help: "Test-set indices, comma-separated (e.g. 0,7,42).")
  var indices: String?
  @Flag(help: "The samples the model gets wrong.")
  var misclassified = false
  @Option(help: "Show the K most likely classes of each sample (default 2: the prediction and the runner-up).")
  var top = 2
  @Flag(help: "Print one JSON object instead of text.")
  var json = false
  @Option(help: "Draw the samples with their labels: FILE.png or FILE.svg.")
  var image: String?

  func run() throws {
    // Options and the output path are checked before any work: a bad one writes nothing.
    let picture = try image.map { try OutputFile(path: $0, option: "--image", formats: [.png, .svg]) }
    if let count, count < 1 {
      throw ConfigurationError(option: "--count", expected: "a number of samples >= 1", found: "\(count)")
    }
    if indices != nil && (misclassified || count != nil) {
      throw ConfigurationError(
        option: "--indices", expected: "either --indices or --count/--misclassified", found: "both",
        hint: "--indices names the samples itself.")
    }
    let chosen = try indices.map(Self.parseIndices)
    guard MPICommunicator.launchRank == 0 else { return }
    let saved = try source.load()
    let test = saved.data.test
    let classes = saved.state.model.classCount
    guard top >= 1 && top <= classes else {
      throw ConfigurationError(option: "--top", expected: "a number of classes in 1...\(classes)", found: "\(top)")
    }
    if let bad = chosen?.first(where: { $0 >= test.count }) {
      throw ConfigurationError(
        option: "--indices", expected: "indices below the test set's size \(test.count)", found: "\(bad)",
        hint: "The test set's samples are numbered 0...\(test.count - 1).")
    }
    let predictions: [Prediction]
    if let chosen {
      predictions = Predictor.predict(
        model: saved.model, dataset: test, indices: chosen, preprocessing: saved.preprocessing)
    } else if misclassified {
      let wrong = Predictor.predictAll(model: saved.model, dataset: test, preprocessing: saved.preprocessing).filter {
        !$0.isCorrect
      }
      predictions = count.map { Array(wrong.prefix($0)) } ?? wrong
    } else {
      predictions = Predictor.predict(
        model: saved.model, dataset: test, indices: Array(0..<min(count ?? 10, test.count)),
        preprocessing: saved.preprocessing)
    }
    let names = saved.classNames
    if let picture {
      let tiles = predictions.map { Self.tile($0, dataset: test, names: names) }
      switch picture.format {
      case .png: try picture.write(PredictionGrid.png(tiles))
      case .svg: try picture.write(Array(PredictionGrid.svg(tiles).utf8))
      }
    }
    if json {
      print(try Self.json(predictions, names: names, top: top, saved: saved, image: picture?.path))
      return
    }
    print("checkpoint: \(saved.location.path) (step \(saved.state.step), \(saved.state.model))")
    print(Self.table(predictions, names: names, top: top))
    let right = predictions.filter(\.isCorrect).count
    print("\(right) of \(predictions.count) right" + (picture.map { "; drawn in \($0.path)" } ?? ""))
  }

  static func parseIndices(_ text: String) throws -> [Int] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    let values = parts.map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !parts.isEmpty, values.allSatisfy({ $0 != nil && $0! >= 0 }) else {
      throw ConfigurationError(
        option: "--indices", expected: "test-set indices >= 0, comma-separated (e.g. 0,7,42)", found: "'\(text)'")
    }
    return values.map { $0! }
  }

  /// The text table: a column pair (class, probability) for each of the top K guesses.
  static func table(_ predictions: [Prediction], names: [String], top: Int) -> String {
    let width = max(12, (names.map(\.count).max() ?? 0) + 2)
    func pad(_ text: String) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }
    let shown = max(top, 1)
    let ordinals = ["predicted", top == 2 ? "runner-up" : "2nd", "3rd"]
    var header = " index  " + pad("true")
    for rank in 0..<shown {
      header += pad(rank < ordinals.count ? ordinals[rank] : "\(rank + 1)th") + "prob    "
    }
    var lines = [header + "right"]
    for prediction in predictions {
      var line = String(format: "%6d  ", prediction.index) + pad(names[prediction.trueLabel])
      for guess in prediction.ranked.prefix(shown) {
        line += pad(names[guess.label]) + String(format: "%.4f  ", guess.probability)
      }
      lines.append(line + (prediction.isCorrect ? "yes" : "NO"))
    }
    return lines.joined(separator: "\n")
  }

  static func json(
    _ predictions: [Prediction], names: [String], top: Int, saved: SavedModel, image: String?
  ) throws -> String {
    var object: [String: Any] = [
      "checkpoint": saved.location.path, "step": saved.state.step, "model": saved.state.model.description,
      "dataset": saved.data.kind.rawValue, "classes": names,
      "predictions": predictions.map { prediction -> [String: Any] in
        [
          "index": prediction.index, "true": prediction.trueLabel, "true_name": names[prediction.trueLabel],
          "predicted": prediction.predicted, "predicted_name": names[prediction.predicted],
          "probability": prediction.ranked[0].probability, "correct": prediction.isCorrect,
          "top": prediction.ranked.prefix(top).map {
            ["class": $0.label, "name": names[$0.label], "probability": $0.probability] as [String: Any]
          },
        ]
      },
    ]
    if let image { object["image"] = image }
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
  }

  /// One picture tile: the sample's pixels scaled to 0...1, in its image shape (a square when it has none).
  static func tile(_ prediction: Prediction, dataset: Dataset, names: [String]) -> PredictionGrid.Tile {
    let features = dataset.featureCount
    let shape = dataset.sampleShape
    var (height, width) = shape.count == 3 ? (shape[1], shape[2]) : (1, features)
    let side = Int(Double(features).squareRoot().rounded())
    if shape.count != 3 && side * side == features { (height, width) = (side, side) }
    // Colour for three channels; otherwise the first channel, in gray.
    let channels = shape.count == 3 && shape[0] == 3 ? 3 : 1
    let pixels = Array(dataset.sample(prediction.index).prefix(channels * height * width))
    return PredictionGrid.Tile(
      pixels: pixels, width: width, height: height, channels: channels, index: prediction.index,
      trueName: names[prediction.trueLabel], predictedName: names[prediction.predicted],
      probability: prediction.ranked[0].probability, correct: prediction.isCorrect)
  }
}
