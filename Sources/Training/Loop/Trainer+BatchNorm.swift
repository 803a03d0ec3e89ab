import Checkpoints
import Communication
import Layers
import Tensors

// Note [Running statistics]: every rank holds the same running statistics at every step, in both modes, so
// evaluation, checkpoints and `--check-consistency` never depend on which rank is asked or when.
//   - The forward does not touch them. Each micro-batch's batch statistics (each batch norm's mean and unbiased
//     variance per channel) ride the gradient sum's scalar tail (`GradientTail`), never compressed, one slot per
//     micro-batch. After the sum every rank applies the same momentum updates, micro-batch by micro-batch, from
//     the same summed values.
//   - `local`: every worker writes its own statistics; the sum divided by K is their average over the workers.
//     With --simulate-workers each simulated worker writes its own, and the sum is the same.
//   - `sync`: every rank already holds the statistics of all K·B samples; rank 0 writes them and the others write
//     zeros, so the sum is exactly those values (divisor 1).
// PyTorch's DDP instead broadcasts rank 0's buffers before every forward, so its local running statistics are
// rank 0's alone; averaging keeps the other K − 1 workers' batches in them too, at no extra message.

/// `--batch-norm sync`'s sums over the ranks: an all-gather of every rank's sums on a communicator of its own (so
/// it never interleaves with the gradient exchange's collectives), then the sum in rank order on every rank, so
/// every rank gets the same bits whatever MPI's algorithm. The buffers are allocated once, for the largest call.
final class RankStatisticsSum: StatisticsSynchronizer {
  private let communicator: Communicator
  private var gathered: [Double]
  /// The first failure of a collective in this pass; the trainer raises it after the pass.
  private(set) var failure: Error?

  init(communicator: Communicator, largest: Int) {
    self.communicator = communicator
    gathered = [Double](repeating: 0, count: largest * communicator.size)
  }

  func sumOverRanks(_ values: UnsafeMutableBufferPointer<Double>) {
    guard failure == nil else { return }
    let (ranks, n) = (communicator.size, values.count)
    precondition(n * ranks <= gathered.count, "more statistics than the synchronizer was built for")
    do {
      try gathered.withUnsafeMutableBytes { receive in
        try communicator.allGather(
          UnsafeRawBufferPointer(values), into: UnsafeMutableRawBufferPointer(rebasing: receive[0..<(8 * n * ranks)]))
      }
    } catch {
      failure = error
      return
    }
    for i in 0..<n {
      var sum = gathered[i]
      for rank in 1..<max(ranks, 1) { sum += gathered[rank * n + i] }
      values[i] = sum
    }
  }

  /// Throws the pass's failure, if any, and forgets it.
  func raiseFailure() throws {
    if let failure {
      self.failure = nil
      throw failure
    }
  }
}

extension Trainer {
  /// The scalar tail's length: the fixed scalars, then one slot of batch statistics per micro-batch (Note [Running
  /// statistics]).
  static func tailCount(_ plan: RunPlan) -> Int {
    GradientTail.count + plan.accumulate * plan.model.batchStatisticsCount
  }

  /// The sums over the ranks `--batch-norm sync` needs, on a communicator of its own (collective: every rank builds
  /// it); nil for `local`, for a model without batch norm, and for a single worker (its own statistics are
  /// already all of them).
  static func makeStatisticsSynchronizer(
    configuration: TrainingConfiguration, communicator: Communicator, spec: ModelSpec
  ) throws -> RankStatisticsSum? {
    guard configuration.batchNorm == .sync, spec.batchStatisticsCount > 0, communicator.size > 1 else { return nil }
    let largest = spec.batchStatisticsCount + 1  // the forward's 2c sums and the count, for the widest layer
    return RankStatisticsSum(
      communicator: try communicator.split(color: 0, key: communicator.rank), largest: largest)
  }

  /// After micro-batch `microBatch`'s forward and backward: its batch statistics into the tail's slot (zeros on
  /// ranks other than 0 with `sync`). Throws a synchronised pass's failure.
  func writeBatchStatistics(microBatch: Int) throws {
    try statisticsSynchronizer?.raiseFailure()
    let count = model.batchStatisticsCount
    guard count > 0 else { return }
    let weight: Float = configuration.batchNorm == .sync && communicator.rank != 0 ? 0 : 1
    model.copyBatchStatistics(
      into: model.gradients.pointer + model.parameterCount + GradientTail.count + microBatch * count, weight: weight)
  }

  /// After the sum: every batch norm's running statistics take the step's micro-batches' statistics in turn
  /// (averaged over the workers with `local`), the same on every rank.
  func updateRunningStatistics(_ sums: FloatBuffer) {
    let count = model.batchStatisticsCount
    guard count > 0 else { return }
    let divisor: Float = configuration.batchNorm == .sync ? 1 : Float(plan.worldSize)
    for microBatch in 0..<plan.accumulate {
      model.updateRunningStatistics(
        from: sums.pointer + model.parameterCount + GradientTail.count + microBatch * count, divisor: divisor)
    }
  }

  /// The model's state_dict as the checkpoint holds it: for each layer in order, its parameters (from
  /// `parameters`: the model's, or the optimizer's momentum laid out the same), then with `buffers` its running
  /// statistics and num_batches_tracked (int64).
  func stateTensors(parameters: FloatBuffer, buffers: Bool) -> [NamedTensor] {
    Self.stateTensors(model: model, parameters: parameters, buffers: buffers)
  }

  static func stateTensors(model: Sequential, parameters: FloatBuffer, buffers: Bool) -> [NamedTensor] {
    var tensors: [NamedTensor] = []
    var parameterViews = model.views[...]
    var bufferViews = model.bufferViews[...]
    var batchNorms = Array(zip(model.batchNormNames, model.batchNorms))[...]
    for index in model.layers.indices {
      let prefix = "\(index)."
      while let view = parameterViews.first, view.name.hasPrefix(prefix) {
        tensors.append(
          NamedTensor(
            name: view.name, shape: view.shape,
            values: Array(UnsafeBufferPointer(start: parameters.pointer + view.offset, count: view.count))))
        parameterViews = parameterViews.dropFirst()
      }
      guard buffers else { continue }
      while let view = bufferViews.first, view.name.hasPrefix(prefix) {
        tensors.append(
          NamedTensor(
            name: view.name, shape: view.shape,
            values: Array(UnsafeBufferPointer(start: model.buffers.pointer + view.offset, count: view.count))))
        bufferViews = bufferViews.dropFirst()
      }
      // Every batch norm of layer `index`: itself ("4"), or inside a block ("4.body.1").
      while let (name, batchNorm) = batchNorms.first, name == "\(index)" || name.hasPrefix(prefix) {
        tensors.append(
          NamedTensor(name: name + ".num_batches_tracked", shape: [], integers: [batchNorm.batchesTracked]))
        batchNorms = batchNorms.dropFirst()
      }
    }
    return tensors
  }

  /// The running statistics and batch counts of `model` from a checkpoint's tensors; each must exist with the
  /// model's shape (num_batches_tracked an int64 scalar).
  public static func buffers(_ tensors: [NamedTensor], of model: Sequential, path: String) throws -> (
    values: [Float], batchesTracked: [Int64]
  ) {
    let byName = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    func missing(_ name: String, _ problem: String) -> CheckpointError {
      CheckpointError(
        path: path, problem: "the checkpoint is of model with other tensors: '\(name)' \(problem)",
        hint: "Use the --model the checkpoint was trained with.")
    }
    var values = [Float](repeating: 0, count: model.bufferCount)
    for view in model.bufferViews {
      guard let tensor = byName[view.name] else { throw missing(view.name, "is missing") }
      guard tensor.dtype == .f32, tensor.shape == view.shape else {
        throw missing(view.name, "is \(tensor.dtype.rawValue) \(tensor.shape), expected F32 \(view.shape)")
      }
      values.replaceSubrange(view.offset..<(view.offset + view.count), with: tensor.values)
    }
    var counts: [Int64] = []
    for prefix in model.batchNormNames {
      let name = prefix + ".num_batches_tracked"
      guard let tensor = byName[name] else { throw missing(name, "is missing") }
      guard tensor.dtype == .i64, tensor.count == 1 else {
        throw missing(name, "is \(tensor.dtype.rawValue) \(tensor.shape), expected an I64 scalar")
      }
      counts.append(tensor.integers[0])
    }
    return (values, counts)
  }
}
