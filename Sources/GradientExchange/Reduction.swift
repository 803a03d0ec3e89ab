import Communication
import Tensors

/// What a run asks of the gradient exchange: the reduction options of its configuration (docs/INTERFACE.md).
package struct ReductionOptions: Sendable {
  /// `--deterministic`: every rank's gradients summed in rank order (`DeterministicReducer`), across hosts too.
  package var deterministic = false
  /// `--simulate-workers K`: one process computes the K workers (`SimulatedWorkersReducer`).
  package var simulatedWorkers: Int? = nil
  /// `--overlap`: MPI's all-reduce in buckets while the backward goes on (`OverlappingReducer`).
  package var overlapsAllReduce = false
  /// `--shared-memory` (the default): ranks on one host sum through memory they all map.
  package var sharedMemory = true
  /// `--compress`: what crosses hosts in the two-level sum.
  package var compression = GradientCompression.none
  /// `--overlap-hosts`: the two-level sum overlaps the backward.
  package var overlapsAcrossHosts = false

  /// The defaults: what a run without reduction options gets.
  package init() {}

  /// Whether to try the shared-memory reducer (it still needs every rank on one host, K > 1): `--overlap` asks for
  /// MPI's all-reduce instead.
  package var usesSharedMemory: Bool { sharedMemory && !overlapsAllReduce }
}

/// Told when this rank enters and leaves each step's gradient collective (`ddp-train bench` keeps the times).
package protocol CollectiveObserver: AnyObject {
  /// This rank is about to enter step `step`'s collective.
  func entering(step: Int)
  /// This rank has the step's sums (the collective returned).
  func left(step: Int)
}

/// How one run sums its gradient buffer across ranks: the reducer chosen for the world once, at the start, where
/// the buffer lives (a shared window when the reducer placed it), and what the run header says about the choice.
///
/// The buffer is the model's parameters' gradients followed by a scalar tail the trainer writes (its length is
/// `gradients.count`); every reducer sums all of it, so the tail's scalars ride along.
package final class Reduction {
  /// The reducer the run uses for every step.
  package let reducer: any GradientReducer
  /// The gradient buffer the model must write into (the reducer's slot in a shared window, or a buffer of its own).
  package let gradients: FloatBuffer
  /// Why the reduction is not the one a user might expect (a flat fallback across hosts, an unused --compress).
  package let note: String?
  /// The same reducer, when it can leave the parameters' last addition to the update; cast once here, not at every
  /// step.
  private let addendReducer: (any AddendReducer)?
  /// Set by `ddp-train bench` before the run: told of every step's collective.
  package var observer: (any CollectiveObserver)?

  init(reducer: any GradientReducer, gradients: FloatBuffer, note: String?) {
    self.reducer = reducer
    self.gradients = gradients
    self.note = note
    addendReducer = reducer as? AddendReducer
  }

  /// The reduction for a buffer of `count` floats whose first `parameterCount` are gradients. Collective: every
  /// rank takes the same branch. Simulated workers are summed in rank order in this process; otherwise ranks on
  /// one host share memory and ranks on several hosts sum in two levels where they can, and the rest is flat:
  /// `DeterministicReducer` for --deterministic, `OverlappingReducer` for K > 1 with --overlap, else one blocking
  /// all-reduce. Without --deterministic a world of one gets the blocking one (a no-op), so a run
  /// without mpirun and `mpirun -np 1` compute the same bits whatever the communicator.
  package static func make(
    options: ReductionOptions, communicator: any Communicator, count: Int, parameterCount: Int
  ) throws -> Reduction {
    if options.simulatedWorkers != nil {
      return Reduction(reducer: SimulatedWorkersReducer(count: count), gradients: FloatBuffer(count: count), note: nil)
    }
    let placed = try hostAware(
      options: options, communicator: communicator, count: count, parameterCount: parameterCount)
    if let reducer = placed?.reducer, let gradients = placed?.gradients {
      return Reduction(reducer: reducer, gradients: gradients, note: placed?.note)
    }
    let gradients = FloatBuffer(count: count)
    let reducer: any GradientReducer
    if options.deterministic {
      reducer = DeterministicReducer(communicator: communicator)
    } else if options.overlapsAllReduce, communicator.size > 1 {
      reducer = OverlappingReducer(communicator: communicator, gradients: gradients, parameterCount: parameterCount)
    } else {
      reducer = BlockingReducer(communicator: communicator)
    }
    return Reduction(reducer: reducer, gradients: gradients, note: placed?.note)
  }

  /// The reducer's name, and the note on why it is the one, in words (the run header, `ddp-train bench`).
  package var description: String { reducer.name + (note.map { " (\($0))" } ?? "") }

  /// Step 3: the sum of every rank's `gradients`. With `leavingAddends`, a reducer that can (`AddendReducer`)
  /// leaves the parameters' last addition to the update, which adds the two addends in its own pass.
  package func reduce(_ gradients: FloatBuffer, parameterCount: Int, step: Int, leavingAddends: Bool) throws
    -> ReducedGradients
  {
    observer?.entering(step: step)
    let reduced: ReducedGradients
    if leavingAddends, let addendReducer {
      let (sums, addends) = try addendReducer.finishLeavingParameterSum(gradients, parameterCount: parameterCount)
      reduced = ReducedGradients(sums: sums, addends: addends)
    } else {
      reduced = ReducedGradients(sums: try reducer.finish(gradients), addends: nil)
    }
    observer?.left(step: step)
    return reduced
  }

  /// The bytes this rank handed to other hosts in the last step (the sum in two levels only; nil otherwise).
  package var bytesSentAcrossHostsLastStep: Int? { (reducer as? HierarchicalReducer)?.bytesSentLastStep }

  /// Two ranks on one host: how many steps used each exchange (Note [Two exchanges for two cores]), and the last
  /// round trip between the two cores they were chosen from, in ns.
  package var pairExchangeSteps: (streamed: Int, sharded: Int, roundTripNanoseconds: Double)? {
    guard let pair = reducer as? SharedMemoryPairReducer else { return nil }
    return (pair.steps[.streamed] ?? 0, pair.steps[.sharded] ?? 0, pair.lastRoundTripNanoseconds)
  }

  /// A reducer that decided where the gradient buffer lives (in a shared window), or a note on why none applied.
  private struct HostAwareReduction {
    var reducer: (any GradientReducer)?
    var gradients: FloatBuffer?
    /// Said after the reducer's name in the run header: why the two-level sum or `--compress` is not used.
    var note: String?
  }

  /// The reducers that know about hosts (collective; every rank takes the same branch): all ranks on one host sum
  /// through shared memory (`SharedMemoryReducer`); ranks on several hosts, the same number on each, in two levels
  /// (`HierarchicalReducer`). Nil reducer: `make` picks a flat one, and `note` says why.
  private static func hostAware(
    options: ReductionOptions, communicator: any Communicator, count: Int, parameterCount: Int
  ) throws -> HostAwareReduction? {
    guard communicator.size > 1 else { return nil }
    let compress = options.compression
    let unused =
      compress == .none ? nil : "--compress \(compress.rawValue) has nothing to do: it applies to what crosses hosts"
    switch try HierarchicalReducer.layout(of: communicator) {
    case .oneHost:
      guard options.usesSharedMemory else { return HostAwareReduction(note: unused) }
      // Two ranks: the exchange that suits where the two cores are (Note [Two exchanges for two cores]).
      if let pair = try SharedMemoryPairReducer.make(communicator: communicator, count: count) {
        return HostAwareReduction(reducer: pair, gradients: pair.ownSlot, note: unused)
      }
      guard let reducer = try SharedMemoryReducer.make(communicator: communicator, count: count)
      else { return HostAwareReduction(note: unused) }
      return HostAwareReduction(reducer: reducer, gradients: reducer.ownSlot, note: unused)
    case .unequal(let ranksPerHost):
      return HostAwareReduction(
        note: "hosts run \(ranksPerHost.map(String.init).joined(separator: ", ")) ranks: the sum in two levels needs "
          + "the same number on every host" + (compress == .none ? "" : ", and --compress needs the two levels"))
    case .hosts(let layout):
      let flat: String?
      if options.deterministic {
        flat = "--deterministic sums every rank's gradients in rank order, across hosts too"
      } else if options.overlapsAllReduce {
        flat = "--overlap asks for MPI's all-reduce in buckets; --overlap-hosts overlaps the sum in two levels"
      } else if layout.ranksPerHost > 1 && !options.sharedMemory {
        flat = "--no-shared-memory turns off the sum within hosts"
      } else {
        flat = nil
      }
      if let flat { return HostAwareReduction(note: flat + (compress == .none ? "" : "; --compress not used")) }
      guard
        let reducer = try HierarchicalReducer.make(
          layout: layout, count: count, parameterCount: parameterCount, compression: compress,
          overlaps: options.overlapsAcrossHosts)
      else { return HostAwareReduction(note: "the hosts offer no shared memory; --compress not used") }
      return HostAwareReduction(reducer: reducer, gradients: reducer.ownSlot, note: nil)
    }
  }
}
