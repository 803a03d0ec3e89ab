import Checkpoints
import Communication
import Datasets
import Foundation
import GradientExchange
import Layers
import Optimizers
import Tensors

/// A checkpoint read and verified by rank 0.
struct LoadedCheckpoint {
  var location: CheckpointLocation
  var state: CheckpointState
  var parameters: [Float]
  /// The optimizer's state buffers, in the order of `Optimizer.state`, each in the parameters' layout.
  var optimizerState: [[Float]]
  /// Optimizer steps taken (`ddp_train.optimizer_steps`; nil in checkpoints from before it was recorded).
  var optimizerSteps: Int?
  /// The batch norms' running statistics (`Sequential.buffers`) and num_batches_tracked.
  var buffers: [Float]
  var batchesTracked: [Int64]
  /// The reducer state every rank carried (`reducer-state.safetensors`), when the checkpoint has it.
  var reducerState: SavedReducerState?
}

/// Rank 0's checkpoints: the directory (nil without --checkpoint-dir), the hold on it, and the newest one written.
struct Checkpointing {
  let directory: CheckpointDirectory?
  /// Rank 0's hold on the directory (`CheckpointLock`), kept until the process ends.
  var lock: CheckpointLock?
  /// The newest checkpoint this run wrote (its path).
  var last: String?

  init(directory: CheckpointDirectory?) { self.directory = directory }
}

/// Every rank's `CarriedReducerState`, as a checkpoint holds it: tensor `name` is [world size, n], row r rank r's.
struct SavedReducerState {
  var layout: String
  var worldSize: Int
  var tensors: [NamedTensor]
}

extension Trainer {
  static let jsonEncoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return encoder
  }()

  public static let jsonDecoder: JSONDecoder = {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(
      positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return decoder
  }()

  /// The safetensors metadata that lets a reader rebuild the network and its input (docs/INTERFACE.md).
  var modelMetadata: [String: String] {
    Self.modelMetadata(plan.model, step: step, preprocessing: configuration.preprocessing)
  }

  /// `ddp_train.architecture` is a `torch.nn.Sequential(...)` expression whose state_dict has exactly the file's
  /// tensors; `ddp_train.input_shape` is one sample's shape as that network takes it; `ddp_train.preprocessing`
  /// says in words what the input went through, and with `--normalize` `ddp_train.normalize_mean` and
  /// `ddp_train.normalize_std` hold the per-channel values (comma lists).
  static func modelMetadata(_ spec: ModelSpec, step: Int, preprocessing: Preprocessing) -> [String: String] {
    let shape = spec.inputShape.map(String.init)
    let layout =
      spec.inputShape.count == 1
      ? "pixels of each \(spec.inputSize == 784 ? "28x28 " : "")image flattened row-major to \(spec.inputSize)"
      : "each image as [\(shape.joined(separator: ", "))] (channels, height, width), batches NCHW"
    var metadata = [
      "format": "pt",
      "ddp_train.model": spec.name,
      "ddp_train.architecture": spec.torchExpression,
      "ddp_train.input_shape": shape.joined(separator: ","),
      "ddp_train.preprocessing": "x = float32(pixel) / 255, \(layout); "
        + (preprocessing.normalization.map {
          "then x = (x - mean[c]) / std[c] per channel c with mean [\($0.means.map { "\($0)" }.joined(separator: ", "))] "
            + "and std [\($0.stds.map { "\($0)" }.joined(separator: ", "))]"
        } ?? "no mean/std normalisation")
        + (preprocessing.isRandom
          ? "; in training only (never in eval or predict): "
            + [
              preprocessing.randomCrop > 0
                ? "a random crop of the image zero-padded by \(preprocessing.randomCrop) pixels (before the normalisation)"
                : nil,
              preprocessing.randomFlip ? "a random horizontal flip" : nil,
            ].compactMap { $0 }.joined(separator: ", ") : ""),
      "ddp_train.step": String(step),
    ]
    if let normalization = preprocessing.normalization {
      metadata["ddp_train.normalize_mean"] = normalization.means.map { "\($0)" }.joined(separator: ",")
      metadata["ddp_train.normalize_std"] = normalization.stds.map { "\($0)" }.joined(separator: ",")
    }
    if let sizes = spec.layerSizes { metadata["ddp_train.layer_sizes"] = sizes.map(String.init).joined(separator: ",") }
    let modules = spec.moduleDefinitions
    if !modules.isEmpty { metadata["ddp_train.modules"] = modules }
    return metadata
  }

  /// One tensor per parameter tensor, named `<name>.<suffix>` (or `<name>` for an empty suffix).
  func tensors(from buffer: FloatBuffer, suffix: String = "") -> [NamedTensor] {
    model.views.map { view in
      NamedTensor(
        name: suffix.isEmpty ? view.name : view.name + "." + suffix, shape: view.shape,
        values: Array(UnsafeBufferPointer(start: buffer.pointer + view.offset, count: view.count)))
    }
  }

  /// What optimizer.safetensors says of the update rule besides its tensors.
  var optimizerMetadata: [String: String] {
    let c = configuration
    var metadata = [
      "ddp_train.optimizer": Self.optimizerDescription(c),
      "ddp_train.weight_decay": String(c.resolvedWeightDecay), "ddp_train.bias_decay": String(c.biasDecay),
      "ddp_train.optimizer_steps": String(updateRule.optimizer.stepCount),
    ]
    if c.usesMomentum {
      metadata["ddp_train.momentum"] = String(c.resolvedMomentum)
      metadata["ddp_train.nesterov"] = String(c.resolvedNesterov)
    } else {
      metadata["ddp_train.betas"] = c.resolvedBetas.description
      metadata["ddp_train.eps"] = String(c.resolvedEps)
    }
    return metadata
  }

  /// `ddp_train.optimizer`'s value: the update rule and the state it saves ("torch.optim.SGD momentum_buffer").
  static func optimizerDescription(_ c: TrainingConfiguration) -> String {
    switch c.optimizer {
    case .sgd: return "torch.optim.SGD momentum_buffer"
    case .lars: return "LARS momentum_buffer trust_coefficient=\(c.trustCoefficient)"
    case .adamw: return "torch.optim.AdamW exp_avg exp_avg_sq"
    case .lamb: return "apex.optimizers.FusedLAMB exp_avg exp_avg_sq max_grad_norm=\(LAMB.maxGradientNorm)"
    }
  }

  /// Every rank's carried reducer state, gathered (collective: every rank calls it at the same step), as the
  /// checkpoint's tensors; nil when the reducer carries none.
  func gatherReducerState() throws -> SavedReducerState? {
    guard let carried = reducer.carriedState else { return nil }
    let ranks = communicator.size
    var own = [Float]()
    own.reserveCapacity(carried.count)
    for (_, values) in carried.buffers { own += values.array }
    var all = [Float](repeating: 0, count: ranks * carried.count)
    try own.withUnsafeBytes { send in try all.withUnsafeMutableBytes { try communicator.allGather(send, into: $0) } }
    // `all` is [rank][buffer][element]; a tensor is one buffer of every rank, [rank][element].
    var offset = 0
    var tensors: [NamedTensor] = []
    for (name, values) in carried.buffers {
      var rows = [Float]()
      rows.reserveCapacity(ranks * values.count)
      for rank in 0..<ranks {
        let start = rank * carried.count + offset
        rows += all[start..<(start + values.count)]
      }
      tensors.append(NamedTensor(name: name, shape: [ranks, values.count], values: rows))
      offset += values.count
    }
    return SavedReducerState(layout: carried.layout, worldSize: ranks, tensors: tensors)
  }

  /// Rank 0 writes DIR/step-<step>/ atomically; the other ranks only hand it their reducer state (collective:
  /// every rank calls it at the same step; their parameters are identical).
  func saveCheckpoint(to directory: CheckpointDirectory) throws {
    let reducerState = try gatherReducerState()
    guard communicator.isCoordinator else { return }
    let reducerBytes = reducerState.map { saved in
      SafeTensors.encode(
        saved.tensors,
        metadata: [
          "ddp_train.reducer_state": saved.layout,
          "ddp_train.world_size": String(saved.worldSize),
          "ddp_train.step": String(step),
        ])
    }
    let modelBytes = SafeTensors.encode(
      stateTensors(parameters: model.parameters, buffers: true), metadata: modelMetadata)
    let optimizerBytes = SafeTensors.encode(
      updateRule.optimizer.state.flatMap { tensors(from: $0.buffer, suffix: $0.suffix) },
      metadata: optimizerMetadata)
    // Defaults that depend on other settings are recorded resolved (`overlap_across_hosts` has always been a
    // boolean in state.json, and `momentum`, `weight_decay` numbers).
    let recordedConfiguration = configuration.recorded
    let state = CheckpointState(
      step: step, epoch: step / plan.stepsPerEpoch, stepInEpoch: step % plan.stepsPerEpoch,
      samplesConsumed: step * plan.globalBatch, worldSize: plan.worldSize, batchSize: plan.batchSize,
      accumulate: plan.accumulate, globalBatch: plan.globalBatch, stepsPerEpoch: plan.stepsPerEpoch,
      totalSteps: plan.totalSteps, seed: configuration.seed,
      rng: .init(
        initializationStream: RandomStream.initialization,
        permutationStream: "epoch e uses stream 2^32 + e", nextPermutationEpoch: step / plan.stepsPerEpoch),
      lrPolicy: plan.learningRate, learningRateAtStep: plan.learningRate.learningRate(atStep: step),
      model: plan.model, dataset: datasetIdentity,
      epochLossSum: thisEpoch.lossSum, epochCorrect: thisEpoch.correct, epochSteps: thisEpoch.steps,
      files: [
        CheckpointDirectory.modelFile: SHA256.hexDigest(modelBytes),
        CheckpointDirectory.optimizerFile: SHA256.hexDigest(optimizerBytes),
      ].merging(reducerBytes.map { [CheckpointDirectory.reducerStateFile: SHA256.hexDigest($0)] } ?? [:]) { a, _ in a },
      configuration: recordedConfiguration)
    let stateBytes = Array(try Self.jsonEncoder.encode(state)) + Array("\n".utf8)
    // A write that fails now (full disk, a directory removed or made read-only during the run) is a failure
    // while training, not an input error: the run had already written things (exit status 1).
    let location: CheckpointLocation
    // Locked (so it existed) and now gone: someone removed it; recreating it would hide that from the user.
    let removed = TrainingError.io(
      path: directory.path,
      message:
        "the checkpoint directory was removed during the run; the checkpoint of step \(step) cannot be saved. "
        + "Restore the directory (or choose another --checkpoint-dir) and resume from a copy of it")
    func directoryIsGone() -> Bool {
      checkpointing.lock != nil && !FileManager.default.fileExists(atPath: directory.path)
    }
    if directoryIsGone() { throw removed }
    do {
      location = try directory.write(
        step: step,
        files: [(CheckpointDirectory.modelFile, modelBytes), (CheckpointDirectory.optimizerFile, optimizerBytes)]
          + (reducerBytes.map { [(CheckpointDirectory.reducerStateFile, $0)] } ?? [])
          + [(CheckpointDirectory.stateFile, stateBytes)])
      checkpointing.last = location.path
      if let keep = configuration.keep { try directory.prune(keep: keep) }
    } catch {
      // Removed while this write was under way. A removal deletes the contents first and the directory last, so
      // the directory may still be there: a path of this write that vanished inside it (ENOENT) says the same.
      let vanished = error.path.hasPrefix(directory.path + "/") && error.isMissingPath
      if directoryIsGone() || vanished { throw removed }
      let earlier = checkpointing.last.map { "; the newest complete checkpoint is \($0)" } ?? ""
      throw TrainingError.io(
        path: error.path,
        message: "\(error.problem) while writing the checkpoint of step \(step)\(earlier). \(error.hint)")
    }
    try metrics?.append("checkpoint", ["step": .int(step), "path": .string(location.path)])
  }

  var datasetIdentity: CheckpointState.DatasetIdentity {
    CheckpointState.DatasetIdentity(
      kind: data.kind, source: data.source, trainCount: data.train.count, testCount: data.test.count,
      fingerprint: String(trainFingerprint, radix: 16))
  }

  /// The newest checkpoint in `directory` that verifies (files present, SHA-256 as recorded, tensors of this
  /// model's shapes). Ones that fail are reported by name and skipped, never used and never deleted.
  func loadNewestCheckpoint(from directory: CheckpointDirectory) throws -> LoadedCheckpoint {
    let locations = try directory.list()
    guard !locations.isEmpty else {
      throw CheckpointError(
        path: directory.path,
        problem: "--resume found no complete checkpoint (no step-<8 digits> folder with all three files)",
        hint: "Run without --resume to start fresh, or point --checkpoint-dir at the run to continue.")
    }
    var rejected: [CheckpointError] = []
    for location in locations {
      do {
        return try loadCheckpoint(location, from: directory)
      } catch let error as CheckpointError {
        // A shape or optimizer mismatch is the user's mistake, not a damaged file: stop and say so.
        if error.problem.hasPrefix("the checkpoint is of model")
          || error.problem.hasPrefix("the checkpoint is of optimizer")
        {
          throw error
        }
        console.line("warning: skipping checkpoint \(location.path): \(error)")
        rejected.append(error)
      }
    }
    if rejected.count == 1 { throw rejected[0] }
    throw CheckpointError(
      path: directory.path,
      problem: "no checkpoint verifies: " + rejected.map { "\($0.path): \($0.problem)" }.joined(separator: "; "),
      hint: "Damaged checkpoints are kept for inspection. Run with --start-fresh to train anew.")
  }

  func loadCheckpoint(_ location: CheckpointLocation, from directory: CheckpointDirectory) throws -> LoadedCheckpoint {
    let statePath = location.path + "/" + CheckpointDirectory.stateFile
    let state: CheckpointState
    do {
      state = try CheckpointState.decode(try directory.read(CheckpointDirectory.stateFile, of: location))
    } catch let error as CheckpointError {
      throw error
    } catch {
      throw CheckpointError(
        path: statePath,
        problem: "state.json is not a ddp-train checkpoint state (\(Self.describe(decodingError: error)))",
        hint: "The checkpoint is damaged; an older one will be tried.")
    }
    guard state.model == plan.model else {
      throw CheckpointError(
        path: location.path,
        problem: "the checkpoint is of model \(state.model), but this run trains \(plan.model)",
        hint: "Use the --model the checkpoint was trained with, or another --checkpoint-dir.")
    }
    var parameters: [Float] = []
    var optimizerState: [[Float]] = []
    var optimizerSteps: Int?
    var buffers: (values: [Float], batchesTracked: [Int64]) = ([], [])
    for (file, target) in [(CheckpointDirectory.modelFile, 0), (CheckpointDirectory.optimizerFile, 1)] {
      let bytes = try directory.read(file, of: location)
      let path = location.path + "/" + file
      // Structure and shapes first (the more precise messages), then the recorded hash.
      let decoded = try SafeTensors.decode(bytes, path: path)
      if target == 0 {
        parameters = try flatten(decoded.tensors, path: path)
        buffers = try Self.buffers(decoded.tensors, of: model, path: path)
      } else {
        try checkOptimizer(decoded.metadata["ddp_train.optimizer"], path: path)
        optimizerState = try updateRule.optimizer.state.map { entry in
          try Self.flatten(decoded.tensors, into: model, suffix: entry.suffix, path: path)
        }
        optimizerSteps = decoded.metadata["ddp_train.optimizer_steps"].flatMap { Int($0) }
      }
      if let expected = state.files[file], SHA256.hexDigest(bytes) != expected {
        throw CheckpointError(
          path: path, problem: "its SHA-256 differs from the one recorded in state.json", hint: "The file is damaged.")
      }
    }
    return LoadedCheckpoint(
      location: location, state: state, parameters: parameters, optimizerState: optimizerState,
      optimizerSteps: optimizerSteps, buffers: buffers.values, batchesTracked: buffers.batchesTracked,
      reducerState: try loadReducerState(location, from: directory, state: state))
  }

  /// The checkpoint's optimizer state must be this run's kind: SGD's and LARS's momentum buffers are the same
  /// tensors (switching between them works), AdamW's and LAMB's moments likewise; across the two families it is an
  /// input error, not a damaged file.
  func checkOptimizer(_ description: String?, path: String) throws {
    guard let description else { return }  // Older checkpoints: SGD or LARS.
    let savedMoments = description.contains("exp_avg")
    guard savedMoments == !configuration.usesMomentum else {
      let saved = description.split(separator: " ").first.map(String.init) ?? description
      throw CheckpointError(
        path: path,
        problem:
          "the checkpoint is of optimizer \(saved), whose state this run's --optimizer \(configuration.optimizer.rawValue) cannot continue from",
        hint:
          "Resume with the --optimizer the checkpoint was written with, or start a new run in another --checkpoint-dir."
      )
    }
  }

  /// `reducer-state.safetensors` when state.json lists it (verified like the other files), else nil.
  func loadReducerState(
    _ location: CheckpointLocation, from directory: CheckpointDirectory, state: CheckpointState
  ) throws -> SavedReducerState? {
    let file = CheckpointDirectory.reducerStateFile
    guard let expected = state.files[file] else { return nil }
    let bytes = try directory.read(file, of: location)
    let path = location.path + "/" + file
    let decoded = try SafeTensors.decode(bytes, path: path)
    guard SHA256.hexDigest(bytes) == expected else {
      throw CheckpointError(
        path: path, problem: "its SHA-256 differs from the one recorded in state.json", hint: "The file is damaged.")
    }
    guard let layout = decoded.metadata["ddp_train.reducer_state"],
      let worldSize = decoded.metadata["ddp_train.world_size"].flatMap(Int.init), worldSize >= 1,
      decoded.tensors.allSatisfy({ $0.shape.count == 2 && $0.shape[0] == worldSize })
    else {
      throw CheckpointError(
        path: path, problem: "it is not a ddp-train reducer state (metadata or tensor shapes missing)",
        hint: "The checkpoint is damaged; an older one will be tried.")
    }
    return SavedReducerState(layout: layout, worldSize: worldSize, tensors: decoded.tensors)
  }

  /// On resume: every rank takes its row of the checkpoint's reducer state when it was written by the same layout
  /// (same world size, compression, hosts and ranks per host), so the resumed run stays bitwise; otherwise the
  /// state starts at zero and rank 0 says so. Collective.
  func restoreReducerState(from checkpoint: LoadedCheckpoint?) throws {
    guard let carried = reducer.carriedState else { return }
    let ranks = communicator.size
    // [rank][buffer][element], rank 0's decision first.
    var restore: [Int32] = [0]
    var all: [Float] = []
    if let checkpoint {
      let saved = checkpoint.reducerState
      let byName = Dictionary((saved?.tensors ?? []).map { ($0.name, $0) }) { first, _ in first }
      let fits =
        saved?.layout == carried.layout && saved?.worldSize == ranks
        && carried.buffers.allSatisfy { byName[$0.name]?.shape == [ranks, $0.values.count] }
      if fits {
        restore = [1]
        all.reserveCapacity(ranks * carried.count)
        for rank in 0..<ranks {
          for (name, values) in carried.buffers {
            let rows = byName[name]!.values
            all += rows[(rank * values.count)..<((rank + 1) * values.count)]
          }
        }
      } else {
        let why =
          saved.map { "the checkpoint's is \($0.layout), which does not fit this run" }
          ?? "the checkpoint has none (written without --compress across hosts, or by an older ddp-train)"
        console.line(
          "note: this run's \(carried.layout) starts at zero: \(why). The run continues within one step's "
            + "rounding of an uninterrupted one, not bit for bit")
      }
    }
    try communicator.broadcast(&restore, root: 0)
    guard restore[0] == 1 else { return }
    if all.isEmpty { all = [Float](repeating: 0, count: ranks * carried.count) }
    try communicator.broadcast(&all, root: 0)
    var offset = communicator.rank * carried.count
    for (_, values) in carried.buffers {
      values.copy(from: Array(all[offset..<(offset + values.count)]))
      offset += values.count
    }
  }

  func flatten(_ tensors: [NamedTensor], path: String) throws -> [Float] {
    try Self.flatten(tensors, into: model, path: path)
  }

  /// The tensors laid out in `model`'s flat buffer order; each must exist with the model's shape.
  /// `suffix` names the tensors `<name>.<suffix>` (an optimizer's state) instead of `<name>`.
  public static func flatten(
    _ tensors: [NamedTensor], into model: Sequential, suffix: String = "", path: String
  ) throws -> [Float] {
    let byName = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    var flat = [Float](repeating: 0, count: model.parameterCount)
    for view in model.views {
      let name = suffix.isEmpty ? view.name : view.name + "." + suffix
      guard let tensor = byName[name] else {
        throw CheckpointError(
          path: path, problem: "the checkpoint is of model with other tensors: '\(name)' is missing",
          hint: "Use the --model the checkpoint was trained with.")
      }
      guard tensor.shape == view.shape else {
        throw CheckpointError(
          path: path,
          problem: "the checkpoint is of model with '\(view.name)' of shape \(tensor.shape), expected \(view.shape)",
          hint: "Use the --model the checkpoint was trained with.")
      }
      flat.replaceSubrange(view.offset..<(view.offset + view.count), with: tensor.values)
    }
    return flat
  }

  /// The step this run continues at from a checkpoint of `savedStep` steps of `savedGlobalBatch` samples: the same
  /// step for the same global batch, else the step of this run's that has consumed the same epochs and samples.
  func resumedStep(savedStep: Int, savedGlobalBatch: Int, samplesConsumed samples: Int) -> Int {
    guard savedGlobalBatch != plan.globalBatch else { return savedStep }
    let oldStepsPerEpoch = plan.trainCount / savedGlobalBatch
    let epoch = samples / (oldStepsPerEpoch * savedGlobalBatch)
    let inEpoch = samples - epoch * oldStepsPerEpoch * savedGlobalBatch
    return epoch * plan.stepsPerEpoch + inEpoch / plan.globalBatch
  }

  /// `--resume` from a checkpoint already past this run's last step would train nothing and report nothing: an
  /// input error naming both steps (a checkpoint exactly at the end is fine: the run just reports it).
  func checkResumable(_ checkpoint: LoadedCheckpoint) throws {
    let state = checkpoint.state
    let resumed = resumedStep(
      savedStep: state.step, savedGlobalBatch: state.globalBatch, samplesConsumed: state.samplesConsumed)
    guard resumed > plan.totalSteps else { return }
    let limit =
      configuration.maxSteps.map { "--max-steps \($0)" }
      ?? "\(configuration.epochs) epochs of \(plan.stepsPerEpoch) steps"
    throw CheckpointError(
      path: checkpoint.location.path,
      problem:
        "is at step \(resumed), already past this run's last step \(plan.totalSteps) (\(limit)), so --resume would train nothing",
      hint:
        "Pass a larger --max-steps or more --epochs to train on from it, or evaluate it with `ddp-train eval --checkpoint \(checkpoint.location.path)`."
    )
  }

  /// Starts every rank from identical state: rank 0's fresh parameters, or the checkpoint rank 0 loaded.
  func restoreOrBroadcastInitialState(_ checkpoint: LoadedCheckpoint?) throws {
    if configuration.resume {
      // Rank 0 has the checkpoint (prepareOutputs would have failed otherwise); everyone else receives it.
      if let checkpoint {
        model.parameters.copy(from: checkpoint.parameters)
        for (entry, values) in zip(updateRule.optimizer.state, checkpoint.optimizerState) {
          entry.buffer.copy(from: values)
        }
        if model.bufferCount > 0 { model.buffers.copy(from: checkpoint.buffers) }
        model.batchesTracked = checkpoint.batchesTracked
      }
      try communicator.broadcast(UnsafeMutableRawBufferPointer(model.parameters.buffer), root: 0)
      for entry in updateRule.optimizer.state {
        try communicator.broadcast(UnsafeMutableRawBufferPointer(entry.buffer.buffer), root: 0)
      }
      try broadcastBuffers()
      var scalars: [Double] = [0, 0, 0, 0, 0, 0, 0]
      if let checkpoint {
        let state = checkpoint.state
        // The optimizer's own step count (Adam's bias correction) stays with its moments, whatever this run's
        // global batch; older checkpoints (SGD, LARS) did not record it and do not need it.
        scalars = [
          Double(state.step), Double(state.globalBatch), Double(state.samplesConsumed), state.epochLossSum,
          state.epochCorrect, Double(state.epochSteps), Double(checkpoint.optimizerSteps ?? state.step),
        ]
        if state.worldSize != plan.worldSize || state.batchSize != plan.batchSize || state.accumulate != plan.accumulate
        {
          console.line(
            "note: the checkpoint was written by \(state.worldSize) worker\(state.worldSize == 1 ? "" : "s") × \(state.batchSize)"
              + (state.accumulate > 1 ? " × \(state.accumulate)" : "") + " (global batch \(state.globalBatch)); "
              + "this run has \(plan.worldSize) worker\(plan.worldSize == 1 ? "" : "s") × \(plan.batchSize)"
              + (plan.accumulate > 1 ? " × \(plan.accumulate)" : "")
              + " (global batch \(plan.globalBatch))")
        }
      }
      try communicator.broadcast(&scalars, root: 0)
      updateRule.optimizer.stepCount = Int(scalars[6])
      try restoreReducerState(from: checkpoint)
      let savedGlobalBatch = Int(scalars[1])
      if savedGlobalBatch == plan.globalBatch {
        step = Int(scalars[0])
        thisEpoch.lossSum = scalars[3]
        thisEpoch.correct = scalars[4]
        thisEpoch.steps = Int(scalars[5])
      } else {
        // Another global batch: continue from the samples consumed; the lr policy is this run's.
        let samples = Int(scalars[2])
        step = resumedStep(savedStep: Int(scalars[0]), savedGlobalBatch: savedGlobalBatch, samplesConsumed: samples)
        console.line(
          "note: the checkpoint's global batch was \(savedGlobalBatch), this run's is \(plan.globalBatch): continuing "
            + "from \(samples) samples consumed at step \(step); the lr policy is recomputed for the new global batch")
      }
    } else {
      try communicator.broadcast(UnsafeMutableRawBufferPointer(model.parameters.buffer), root: 0)
      try broadcastBuffers()
    }
  }

  /// Rank 0's running statistics and batch counts to every rank (collective).
  func broadcastBuffers() throws {
    guard !model.batchNorms.isEmpty else { return }
    try communicator.broadcast(UnsafeMutableRawBufferPointer(model.buffers.buffer), root: 0)
    var counts = model.batchesTracked
    try communicator.broadcast(&counts, root: 0)
    model.batchesTracked = counts
  }

  public static func describe(decodingError error: Error) -> String {
    guard let error = error as? DecodingError else { return "\(error)" }
    func path(_ context: DecodingError.Context) -> String {
      context.codingPath.map(\.stringValue).joined(separator: ".")
    }
    switch error {
    case .keyNotFound(let key, _): return "missing key '\(key.stringValue)'"
    case .typeMismatch(_, let context): return "wrong type at '\(path(context))': \(context.debugDescription)"
    case .valueNotFound(_, let context): return "missing value at '\(path(context))'"
    case .dataCorrupted(let context): return "not valid JSON: \(context.debugDescription)"
    @unknown default: return "\(error)"
    }
  }
}
