import Checkpoints
import Datasets
import Diagnostics
import Foundation
import Layers
import Training

/// A trained model read back from a checkpoint, with the test data it was trained on (for `eval` and `predict`).
public struct SavedModel {
  public let location: CheckpointLocation
  public let state: CheckpointState
  public let data: DatasetPair
  public let model: Sequential
  /// The normalisation the model was trained with (`--normalize`), which its inputs need here too.
  public var preprocessing: Preprocessing { Preprocessing(normalization: state.configuration.normalize) }
  /// The dataset's class names (see `ClassNames`).
  public var classNames: [String] { data.classNames ?? ClassNames.names(for: data.kind, count: state.model.classCount) }

  /// Reads `checkpoint` (a step folder, or a checkpoint directory whose newest complete checkpoint is used) and
  /// loads its dataset, or `dataset` / `dataDirectory` instead. Every problem is an input error (exit 2).
  public static func load(
    checkpoint: String, dataset: DatasetKind?, dataDirectory: String?, classNames: String? = nil,
    cacheDirectory: String? = nil, maxBatch: Int? = nil
  ) throws -> SavedModel {
    let location = try locate(checkpoint)
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
    if let dataDirectory { configuration.dataDirectory = dataDirectory }
    if let classNames { configuration.classNames = classNames }
    if let cacheDirectory { configuration.cacheDirectory = cacheDirectory }
    let data = try DatasetLoader.load(
      configuration.dataset, directory: configuration.dataDirectory, synthetic: configuration.synthetic,
      options: configuration.dataOptions)
    let model = Sequential(spec: state.model, maxBatch: maxBatch ?? state.model.evaluationBatch)
    let modelPath = location.path + "/" + CheckpointDirectory.modelFile
    let tensors = try SafeTensors.decode(directory.read(CheckpointDirectory.modelFile, of: location), path: modelPath)
    let flat = try Trainer.flatten(tensors.tensors, into: model, path: modelPath)
    model.parameters.copy(from: flat)
    let buffers = try Trainer.buffers(tensors.tensors, of: model, path: modelPath)
    if model.bufferCount > 0 { model.buffers.copy(from: buffers.values) }
    model.batchesTracked = buffers.batchesTracked
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
    return SavedModel(location: location, state: state, data: data, model: model)
  }

  /// A step folder itself, or the newest complete checkpoint of a directory of them.
  public static func locate(_ path: String) throws -> CheckpointLocation {
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
