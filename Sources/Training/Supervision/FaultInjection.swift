import Checkpoints
import Foundation

/// `--inject-fault KIND@RANK:STEP`, for tests only: makes one rank misbehave at one step, reproducibly.
///
/// crash: a Swift runtime trap; exit: `exit(1)` without telling anyone; kill: SIGKILL to itself; term: SIGTERM
/// to itself; error: throws an I/O error (as a failing disk would); hang: stops making progress forever;
/// perturb: changes one parameter (ranks drift apart); nan: poisons the gradient (divergence); killwrite: SIGKILL
/// to rank 0 in the middle of writing the checkpoint of step STEP, after its first file is on disk; termwrite: the
/// same with SIGTERM (a stop requested during a checkpoint write); rmwrite: at the same moment, deletes the folder
/// that checkpoint is being written into, as a `rm -r` of the checkpoint directory does before it reaches the
/// directory itself.
///
/// `KIND@RANK:STEP:once` fires only the first time the run reaches that step with that checkpoint directory (a
/// marker file `.fault-fired-KIND@RANK:STEP` there remembers it), so that a relaunched job (`launch
/// --max-restarts`) gets past it, as it would past a transient fault.
public struct FaultInjection: Equatable, Sendable, CustomStringConvertible {
  public enum Kind: String, CaseIterable, Sendable {
    case crash, exit, kill, term, error, hang, perturb, nan, killwrite, termwrite, rmwrite
  }
  public var kind: Kind
  public var rank: Int
  public var step: Int
  /// Fire once per checkpoint directory (`:once`).
  public var once = false
  /// Where `once` keeps its marker: the run's checkpoint directory (set by the trainer).
  public var markerDirectory: String?

  public init(kind: Kind, rank: Int, step: Int, once: Bool = false) {
    self.kind = kind
    self.rank = rank
    self.step = step
    self.once = once
  }

  public init(parsing text: String) throws(ConfigurationError) {
    let error = ConfigurationError(
      option: "--inject-fault",
      expected: "KIND@RANK:STEP[:once] with KIND one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))",
      found: "'\(text)'")
    let parts = text.split(separator: "@", omittingEmptySubsequences: false)
    guard parts.count == 2, let kind = Kind(rawValue: String(parts[0])) else { throw error }
    let place = parts[1].split(separator: ":", omittingEmptySubsequences: false)
    guard place.count == 2 || (place.count == 3 && place[2] == "once"), let rank = Int(place[0]),
      let step = Int(place[1]), rank >= 0, step >= 0
    else {
      throw error
    }
    self.init(kind: kind, rank: rank, step: step, once: place.count == 3)
  }

  /// `words` without `--inject-fault KIND@RANK:STEP` (for commands printed or relaunched for a user).
  public static func removed(from words: [String]) -> [String] {
    var kept: [String] = []
    var rest = words[...]
    while let word = rest.popFirst() {
      if word == "--inject-fault" {
        _ = rest.popFirst()
      } else if !word.hasPrefix("--inject-fault=") {
        kept.append(word)
      }
    }
    return kept
  }

  public var description: String { "\(kind.rawValue)@\(rank):\(step)" + (once ? ":once" : "") }

  /// For `once`: true the first time (leaving the marker), false after.
  func claimOnce() -> Bool {
    guard once else { return true }
    let directory = markerDirectory ?? "."
    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let marker = directory + "/.fault-fired-\(kind.rawValue)@\(rank):\(step)"
    // O_EXCL: exactly one attempt ever creates it.
    let descriptor = open(marker, O_CREAT | O_EXCL | O_WRONLY, 0o644)
    guard descriptor >= 0 else { return false }
    close(descriptor)
    return true
  }

  /// For `killwrite`, `termwrite` and `rmwrite`: a `CheckpointDirectory.fileWrittenHook` that acts after the first
  /// file of the checkpoint of `step` (only rank 0 writes checkpoints).
  var checkpointHook: (@Sendable (Int, String) -> Void)? {
    guard Self.actsInsideACheckpointWrite.contains(kind) else { return nil }
    let target = step
    let fault = self
    // After the first file only: a second SIGTERM would be a second stop request (which aborts).
    return { step, file in
      guard step == target && file == CheckpointDirectory.modelFile && fault.claimOnce() else { return }
      switch fault.kind {
      case .killwrite: raise(SIGKILL)
      case .termwrite: raise(SIGTERM)
      default: fault.removeFoldersBeingWritten()
      }
    }
  }

  static let actsInsideACheckpointWrite: Set<Kind> = [.killwrite, .termwrite, .rmwrite]

  /// For `rmwrite`: every folder of the checkpoint directory whose checkpoint is still being written.
  func removeFoldersBeingWritten() {
    guard let directory = markerDirectory,
      let names = try? FileManager.default.contentsOfDirectory(atPath: directory)
    else { return }
    for name in names where name.hasPrefix(CheckpointDirectory.temporaryPrefix) {
      try? FileManager.default.removeItem(atPath: directory + "/" + name)
    }
  }

  /// Called by every rank at the start of every step; acts only on the chosen rank and step.
  /// `parameters` and `gradients` are this rank's flat buffers (for perturb and nan).
  func trigger(
    rank: Int, step: Int, parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>
  ) throws {
    guard rank == self.rank, step == self.step, !Self.actsInsideACheckpointWrite.contains(kind), claimOnce()
    else { return }
    switch kind {
    case .crash:
      let nothing: Int? = Int("not a number")
      _ = nothing!  // a deliberate runtime trap
    case .exit:
      Foundation.exit(1)
    case .kill:
      raise(SIGKILL)
    case .term:
      raise(SIGTERM)
    case .error:
      throw TrainingError.io(path: "(injected fault)", message: "simulated I/O error at step \(step)")
    case .hang:
      while true { sleep(1000) }
    case .perturb:
      parameters[0] += 1e-3
    case .nan:
      gradients[0] = .nan
    case .killwrite, .termwrite, .rmwrite:
      break  // acts inside the checkpoint write, see `checkpointHook`
    }
  }
}

/// Ranks whose parameters differ (found by `--check-consistency`). Exit status 1.
public struct ConsistencyError: Error, CustomStringConvertible {
  public var step: Int
  public var differingRanks: [Int]
  public var description: String {
    let ranks = differingRanks.map { "rank \($0)" }.joined(separator: ", ")
    return "parameters differ between ranks after \(step) steps: \(ranks) differ from rank 0. "
      + "Data-parallel ranks must hold identical parameters; this is a bug or a hardware fault."
  }
}
