import CKernels
import Communication
import Tensors

/// How gradients travel between hosts: fp32, or 16 bits a value with error feedback (`--compress`).
public enum GradientCompression: String, CaseIterable, Codable, Sendable {
  case none, bf16, fp16

  /// Bytes a gradient takes on the wire.
  var bytesPerValue: Int { self == .none ? 4 : 2 }
}

/// Sums pieces of a buffer across hosts, in place, among the ranks with the same local rank on every host (the
/// "peers"): started without waiting, progressed between pieces of the backward, finished by `waitAll`.
///
/// fp32: one non-blocking all-reduce per piece. Compressed, a piece of n values among H peers takes two
/// collectives, each moving n·(H−1)/H 16-bit values per rank (half an fp32 ring all-reduce's bytes):
///   1. encode: v = piece + sendResidual; q = 16-bit(v); sendResidual = v − q. The piece is cut into H chunks;
///      an all-to-all gives peer j every peer's chunk j.
///   2. peer j sums its chunk's H contributions in fp32, in peer order, adds its ownerResidual, rounds the sum to
///      16 bits (keeping what rounding lost in ownerResidual) and an all-gather hands every peer every chunk's
///      sum, which each decodes into the piece.
/// Every peer decodes the same bits, so the sums are identical on all ranks. The residuals are per rank and live
/// for the run; checkpoints hold every rank's, and a run resumed on the same layout restores them
/// (`HierarchicalReducer.carriedState`).
///
/// Note [Collective order]: MPI matches collectives by their order on a communicator. Phase 1 (and the fp32
/// all-reduces) run on `scatter`, phase 2 on `gather`, a second communicator over the same peers; pieces start
/// phase 1 in the order they are started and phase 2 strictly in the same order (a piece's phase 2 waits for its
/// predecessor's to have started), so both orders are the same on every peer whatever completes first.
final class PeerExchange {
  let scatter: Communicator
  let gather: Communicator
  let compression: GradientCompression
  /// The buffer the pieces index (the host sums); fixed for the run.
  private let values: FloatBuffer
  /// Error feedback, indexed like `values`: what this rank's sent values lost (phase 1), and what the sums of the
  /// chunks it owns lost (phase 2).
  let sendResidual: FloatBuffer?
  let ownerResidual: FloatBuffer?
  /// Wire buffers per piece: the same pieces come back every step, so after the first step nothing is allocated.
  /// Keyed by the whole range: a step that sends the buffer as one piece (a noise-scale step, which reports no
  /// buckets) must not lend its wire to a bucket that starts at the same element, or the bucket's collectives
  /// would carry the whole piece's chunks (with overlap and bf16 that was 0.84 MB a step instead of 0.47).
  private var wires: [Range<Int>: Wire] = [:]
  private var operations: [Operation] = []
  /// Bytes this rank handed to the network for the current step (both phases), for `bench` and the run header.
  private(set) var bytesSentThisStep = 0

  private enum Stage { case summing, scattering, gathering, done }

  private struct Operation {
    var piece: Range<Int>
    var stage: Stage
    var request: CollectiveRequest
    var compressed: Bool
  }

  /// A piece's wire buffers: H blocks of `chunk` 16-bit values each way, an fp32 scratch chunk for the sum.
  private final class Wire {
    let chunk: Int
    let send: UnsafeMutableBufferPointer<UInt16>
    let received: UnsafeMutableBufferPointer<UInt16>
    let own: UnsafeMutableBufferPointer<UInt16>
    let gathered: UnsafeMutableBufferPointer<UInt16>
    let scratch: UnsafeMutableBufferPointer<Float>

    init(chunk: Int, peers: Int) {
      self.chunk = chunk
      func zeros(_ count: Int) -> UnsafeMutableBufferPointer<UInt16> {
        let buffer = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: max(count, 1))
        buffer.initialize(repeating: 0)
        return buffer
      }
      send = zeros(chunk * peers)
      received = zeros(chunk * peers)
      own = zeros(chunk)
      gathered = zeros(chunk * peers)
      scratch = .allocate(capacity: max(chunk, 1))
      scratch.initialize(repeating: 0)
    }

    deinit {
      for buffer in [send, received, own, gathered] { buffer.deallocate() }
      scratch.deallocate()
    }
  }

  init(scatter: Communicator, gather: Communicator, compression: GradientCompression, values: FloatBuffer) {
    precondition(
      scatter.size == gather.size && scatter.rank == gather.rank, "the two communicators must be the same peers")
    self.scatter = scatter
    self.gather = gather
    self.compression = compression
    self.values = values
    sendResidual = compression == .none ? nil : FloatBuffer(count: values.count)
    ownerResidual = compression == .none ? nil : FloatBuffer(count: values.count)
    operations.reserveCapacity(64)
  }

  var peers: Int { scatter.size }

  /// Starts summing `piece` of `values` across the peers; `compressible` false keeps it fp32 (the scalar tail:
  /// loss sums and counts must stay exact). Every peer starts the same pieces in the same order.
  func start(_ piece: Range<Int>, compressible: Bool) throws {
    guard !piece.isEmpty, peers > 1 else { return }
    let compressed = compressible && compression != .none
    if !compressed {
      let request = try scatter.startAllReduceSum(
        UnsafeMutableBufferPointer(start: values.pointer + piece.lowerBound, count: piece.count))
      bytesSentThisStep += 4 * piece.count * 2 * (peers - 1) / peers
      operations.append(Operation(piece: piece, stage: .summing, request: request, compressed: false))
      return
    }
    let wire = self.wire(for: piece)
    // Phase 1: this rank's values plus what they lost last time, rounded, cut into the peers' chunks.
    for peer in 0..<peers {
      let lower = piece.lowerBound + peer * wire.chunk
      let upper = min(lower + wire.chunk, piece.upperBound)
      guard lower < upper else { continue }
      encode(
        wire.send.baseAddress! + peer * wire.chunk, values.pointer + lower, sendResidual!.pointer + lower, upper - lower
      )
    }
    let request = try scatter.startAllToAll(
      UnsafeRawBufferPointer(wire.send), into: UnsafeMutableRawBufferPointer(wire.received))
    bytesSentThisStep += 2 * wire.chunk * (peers - 1)
    operations.append(Operation(piece: piece, stage: .scattering, request: request, compressed: true))
  }

  /// Lets the started pieces advance (never blocks): completes what MPI has finished, and starts phase 2 of
  /// the pieces whose phase 1 is done, in order.
  func progress() throws {
    for index in operations.indices {
      switch operations[index].stage {
      case .done: continue
      case .gathering, .summing:
        if try scatterOrGather(index).test(operations[index].request) { try advance(index) }
      case .scattering:
        // Phase 2 starts in start order (Note [Collective order]): not before the previous piece's has.
        if index > 0, operations[index - 1].stage == .scattering { return }
        if try scatter.test(operations[index].request) { try advance(index) }
      }
    }
  }

  /// Returns once every started piece holds its sums; then forgets them (the next step starts afresh).
  func waitAll() throws {
    for index in operations.indices {
      while operations[index].stage != .done {
        try scatterOrGather(index).wait(operations[index].request)
        try advance(index)
      }
    }
    operations.removeAll(keepingCapacity: true)
  }

  /// Called when the operation's current request is complete.
  private func advance(_ index: Int) throws {
    let operation = operations[index]
    switch operation.stage {
    case .summing, .gathering:
      if operation.stage == .gathering { decodeGathered(operation.piece) }
      operations[index].stage = .done
    case .scattering:
      let wire = self.wire(for: operation.piece)
      let me = scatter.rank
      let lower = operation.piece.lowerBound + me * wire.chunk
      let count = max(0, min(lower + wire.chunk, operation.piece.upperBound) - lower)
      // The fp32 sum of the peers' 16-bit contributions, in peer order, then its own error feedback.
      let sum = wire.scratch.baseAddress!
      sum.update(repeating: 0, count: wire.chunk)
      for peer in 0..<peers { add(sum, wire.received.baseAddress! + peer * wire.chunk, count) }
      if count > 0 { encode(wire.own.baseAddress!, sum, ownerResidual!.pointer + lower, count) }
      operations[index].request = try gather.startAllGather(
        UnsafeRawBufferPointer(wire.own), into: UnsafeMutableRawBufferPointer(wire.gathered))
      bytesSentThisStep += 2 * wire.chunk * (peers - 1)
      operations[index].stage = .gathering
      if operations[index].request == .completed { try advance(index) }
    case .done:
      break
    }
  }

  private func scatterOrGather(_ index: Int) -> Communicator {
    operations[index].stage == .gathering ? gather : scatter
  }

  private func decodeGathered(_ piece: Range<Int>) {
    let wire = self.wire(for: piece)
    for peer in 0..<peers {
      let lower = piece.lowerBound + peer * wire.chunk
      let upper = min(lower + wire.chunk, piece.upperBound)
      guard lower < upper else { continue }
      decode(values.pointer + lower, wire.gathered.baseAddress! + peer * wire.chunk, upper - lower)
    }
  }

  /// Starts counting the bytes of a new step.
  func beginStep() { bytesSentThisStep = 0 }

  private func wire(for piece: Range<Int>) -> Wire {
    if let wire = wires[piece] { return wire }
    let wire = Wire(chunk: (piece.count + peers - 1) / peers, peers: peers)
    wires[piece] = wire
    return wire
  }

  private func encode(
    _ out: UnsafeMutablePointer<UInt16>, _ x: UnsafePointer<Float>, _ residual: UnsafeMutablePointer<Float>, _ n: Int
  ) {
    switch compression {
    case .bf16: ddp_encode_bf16(out, x, residual, n)
    case .fp16: ddp_encode_fp16(out, x, residual, n)
    case .none: preconditionFailure("encode without compression")
    }
  }

  private func add(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<UInt16>, _ n: Int) {
    guard n > 0 else { return }
    switch compression {
    case .bf16: ddp_add_bf16(out, input, n)
    case .fp16: ddp_add_fp16(out, input, n)
    case .none: preconditionFailure("add without compression")
    }
  }

  private func decode(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<UInt16>, _ n: Int) {
    switch compression {
    case .bf16: ddp_decode_bf16(out, input, n)
    case .fp16: ddp_decode_fp16(out, input, n)
    case .none: preconditionFailure("decode without compression")
    }
  }
}
