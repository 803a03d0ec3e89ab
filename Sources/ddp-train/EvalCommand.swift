import ArgumentParser
import Communication
import Datasets
import Foundation
import Inspection
import MPICommunication
import Training

/// `ddp-train eval --checkpoint DIR`: test loss and accuracy of a saved model, per-class scores and the
/// confusion matrix.
struct EvalCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eval",
    abstract: "Print the test loss and accuracy of a saved model, its per-class scores and confusion matrix.",
    discussion: """
      DIR is a checkpoint folder (…/step-00001234) or a checkpoint directory, whose newest complete checkpoint
      is used. The dataset is the one the checkpoint was trained on unless --dataset/--data-dir say otherwise.
      Per class: accuracy (the share of its samples predicted right, which is its recall), precision, recall, F1
      and support; then the confusion matrix, rows true and columns predicted. Under mpirun, rank 0 does it all.
      """)

  @OptionGroup var source: SavedModelOptions
  @Flag(help: "Print one JSON object instead of text.")
  var json = false
  @Option(help: "Also draw the confusion matrix as a heat map: FILE.svg or FILE.png.")
  var confusion: String?

  func run() throws {
    // Checked before any work: a bad path writes nothing.
    let picture = try confusion.map { try OutputFile(path: $0, option: "--confusion", formats: [.svg, .png]) }
    guard MPICommunicator.launchRank == 0 else { return }
    let saved = try source.load()
    let test = saved.data.test
    let classes = saved.state.model.classCount
    // A confusion matrix is classes² counts: 10,000 for 100 classes, 4.9 billion for 70,000. Beyond
    // `ConfusionMatrix.maxClasses` eval reports the loss and accuracy alone.
    if picture != nil && classes > ConfusionMatrix.maxClasses {
      throw ConfigurationError(
        option: "--confusion", expected: "a model of at most \(ConfusionMatrix.maxClasses) classes",
        found: "\(classes) classes", hint: "Leave out --confusion: eval then prints the test loss and accuracy.")
    }
    let result = try Trainer.evaluate(
      model: saved.model, dataset: test, communicator: SingleProcessCommunicator(), preprocessing: saved.preprocessing)
    // Beyond `ConfusionMatrix.maxClasses`: the loss and accuracy, and a note instead of the matrix.
    let matrix =
      classes <= ConfusionMatrix.maxClasses
      ? ConfusionMatrix(
        Predictor.predictAll(model: saved.model, dataset: test, preprocessing: saved.preprocessing),
        classCount: classes) : nil
    let note = "per-class scores and the confusion matrix are shown for at most \(ConfusionMatrix.maxClasses) classes"
    let names = saved.classNames
    if let picture, let matrix {
      let title = "--model \(saved.state.model.name) at step \(saved.state.step) on \(saved.data.kind.rawValue)"
      switch picture.format {
      case .svg: try picture.write(Array(matrix.heatMapSVG(names: names, title: title).utf8))
      case .png: try picture.write(matrix.heatMapPNG(names: names, title: title))
      }
    }
    if json {
      var object = matrix?.jsonObject(names: names) ?? ["classes": classes, "note": note]
      object["checkpoint"] = saved.location.path
      object["step"] = saved.state.step
      object["model"] = saved.state.model.description
      object["dataset"] = saved.data.kind.rawValue
      object["test_loss"] = result.loss
      object["test_accuracy"] = result.accuracy
      if let picture { object["confusion_image"] = picture.path }
      let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
      print(String(decoding: data, as: UTF8.self))
      return
    }
    print("checkpoint: \(saved.location.path) (step \(saved.state.step), \(saved.state.model))")
    print(
      String(format: "test loss %.4f  test accuracy %.4f", result.loss, result.accuracy)
        + "  (\(test.count) test samples of \(saved.data.kind.rawValue)\(matrix == nil ? ", \(classes) classes" : ""))")
    guard let matrix else {
      print(note + ".")
      return
    }
    print("")
    print(matrix.text(names: names))
    if let picture { print("confusion matrix drawn in \(picture.path)") }
  }
}

/// Where `eval` and `predict` find the model and its data.
struct SavedModelOptions: ParsableArguments {
  @Option(help: "A checkpoint folder, or a --checkpoint-dir (its newest checkpoint).")
  var checkpoint: String
  @Option(help: "fashion-mnist | mnist | synthetic | npz | npy | folder (default: the checkpoint's).")
  var dataset: DatasetKind?
  @Option(name: .customLong("data-dir"), help: "The data's directory or file (default: the checkpoint's).")
  var dataDir: String?
  @Option(
    name: .customLong("class-names"),
    help: "A file of class names, one per line in label order (default: the checkpoint's).")
  var classNames: String?
  @Option(
    name: .customLong("cache-dir"),
    help: "Where decoded samples are kept (default: the checkpoint's, or ~/.cache/ddp-train).")
  var cacheDir: String?

  func load() throws -> SavedModel {
    try SavedModel.load(
      checkpoint: checkpoint, dataset: dataset, dataDirectory: dataDir, classNames: classNames, cacheDirectory: cacheDir
    )
  }
}
