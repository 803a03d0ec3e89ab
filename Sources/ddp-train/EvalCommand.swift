import ArgumentParser
import Checkpoints
import Communication
import Datasets
import Foundation
import Layers
import Training

/// `ddp-train eval --checkpoint DIR`: test loss and accuracy of a saved model.
struct EvalCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eval",
    abstract: "Print the test loss and accuracy of a saved model.",
    discussion: """
      DIR is a checkpoint folder (…/step-00001234) or a checkpoint directory, whose newest complete checkpoint
      is used. The dataset is the one the checkpoint was trained on unless --dataset/--data-dir say otherwise.
      """)

  @Option(help: "A checkpoint folder, or a --checkpoint-dir (its newest checkpoint).")
  var checkpoint: String
  @Option(help: "fashion-mnist | mnist | synthetic (default: the checkpoint's).")
  var dataset: DatasetKind?
  @Option(name: .customLong("data-dir"), help: "Directory of IDX files (default: the checkpoint's).")
  var dataDir: String?

  func run() throws {
    let location = try Self.locate(checkpoint)
    let directory = CheckpointDirectory(path: (location.path as NSString).deletingLastPathComponent)
    let stateBytes = try directory.read(CheckpointDirectory.stateFile, of: location)
    let state: CheckpointState
    do {
      state = try CheckpointState.decode(stateBytes)
    } catch {
      throw CheckpointError(
        path: location.path + "/" + CheckpointDirectory.stateFile,
        problem: "is not a ddp-train checkpoint state (\(Trainer.describe(decodingError: error)))",
        hint: "Point --checkpoint at a folder written by ddp-train train.")
    }
    var configuration = state.configuration
    if let dataset { configuration.dataset = dataset }
    if let dataDir { configuration.dataDirectory = dataDir }
    let data = try DatasetLoader.load(
      configuration.dataset, directory: configuration.dataDirectory, synthetic: configuration.synthetic)
    let model = Sequential(spec: state.model, maxBatch: Trainer.evaluationBatch)
    let modelPath = location.path + "/" + CheckpointDirectory.modelFile
    let tensors = try SafeTensors.decode(directory.read(CheckpointDirectory.modelFile, of: location), path: modelPath)
    let flat = try Trainer.flatten(tensors.tensors, into: model, path: modelPath)
    model.parameters.copy(from: flat)
    let spec = state.model
    let shapeFits =
      spec.inputShape.count == 1 ? data.test.featureCount == spec.inputSize : data.test.sampleShape == spec.inputShape
    guard shapeFits, data.test.classCount == spec.classCount else {
      throw ConfigurationError(
        option: "--dataset",
        expected:
          "data with samples of shape \(spec.inputShape.map(String.init).joined(separator: "x")) and \(spec.classCount) classes",
        found: "\(data.test.sampleShape.map(String.init).joined(separator: "x")), \(data.test.classCount) classes")
    }
    let result = try Trainer.evaluate(model: model, dataset: data.test, communicator: SingleProcessCommunicator())
    print("checkpoint: \(location.path) (step \(state.step), \(state.model))")
    print(
      String(format: "test loss %.4f  test accuracy %.4f", result.loss, result.accuracy)
        + "  (\(data.test.count) test samples of \(data.kind.rawValue))")
  }

  /// A step folder itself, or the newest complete checkpoint of a directory of them.
  static func locate(_ path: String) throws -> CheckpointLocation {
    let name = (path as NSString).lastPathComponent
    if name.hasPrefix("step-"), let step = Int(name.dropFirst(5)) {
      guard FileManager.default.fileExists(atPath: path + "/" + CheckpointDirectory.stateFile) else {
        throw CheckpointError(path: path, problem: "state.json is missing", hint: "This checkpoint is incomplete.")
      }
      return CheckpointLocation(step: step, path: path)
    }
    guard let newest = try CheckpointDirectory(path: path).list().first else {
      throw CheckpointError(
        path: path, problem: "no complete checkpoint here (expected step-<8 digits> folders from ddp-train train)",
        hint: "Pass the --checkpoint-dir of a training run, or one of its step folders.")
    }
    return newest
  }
}
