import Diagnostics

/// What the learning rate does after warmup.
///
/// Coded as its `description` string ("constant", "cosine", "step:30,60"), so config files and
/// checkpoints read the same as the command line.
public enum LRDecay: Codable, Equatable, Sendable, CustomStringConvertible {
  /// The peak for the rest of the run.
  case constant
  /// Half a cosine from the peak to 0 at the run's end.
  case cosine
  /// ×0.1 at each milestone, in epochs (increasing, > 0, fractions allowed).
  case step(milestones: [Double])

  /// The forms `--schedule` accepts, for messages.
  public static let acceptedForms =
    "'constant', 'cosine' or 'step:E1,E2,...' (increasing epochs > 0, e.g. step:30,60)"

  /// Parses "constant", "cosine", "step:30,60" (fractions allowed).
  public init(parsing text: String) throws(LRPolicyError) {
    let trimmed = text.filter { $0 != " " }
    switch trimmed.lowercased() {
    case "constant": self = .constant
    case "cosine": self = .cosine
    default:
      guard trimmed.lowercased().hasPrefix("step:") else {
        throw LRPolicyError("invalid --schedule '\(text)': expected \(Self.acceptedForms)")
      }
      let list = trimmed.dropFirst("step:".count)
      guard !list.isEmpty else {
        throw LRPolicyError(
          "invalid --schedule '\(text)': 'step:' needs at least one milestone; expected \(Self.acceptedForms)"
        )
      }
      var milestones: [Double] = []
      for item in list.split(separator: ",", omittingEmptySubsequences: false) {
        guard let epoch = Double(item), epoch.isFinite else {
          let shown = item.isEmpty ? "an empty entry" : "'\(item)'"
          throw LRPolicyError(
            "invalid --schedule '\(text)': \(shown) is not a number; expected \(Self.acceptedForms)"
          )
        }
        guard epoch > 0 else {
          throw LRPolicyError(
            "invalid --schedule '\(text)': milestone \(item) must be > 0; expected \(Self.acceptedForms)"
          )
        }
        if let last = milestones.last, epoch <= last {
          throw LRPolicyError(
            "invalid --schedule '\(text)': milestones must increase (\(item) after \(Self.format(last))); expected \(Self.acceptedForms)"
          )
        }
        milestones.append(epoch)
      }
      self = .step(milestones: milestones)
    }
  }

  /// "constant", "cosine" or "step:30,60"; parses back to the same value.
  public var description: String {
    switch self {
    case .constant: return "constant"
    case .cosine: return "cosine"
    case .step(let milestones): return "step:" + milestones.map(Self.format).joined(separator: ",")
    }
  }

  /// Whole numbers without ".0"; otherwise Swift's shortest round-tripping form.
  static func format(_ x: Double) -> String {
    if x == x.rounded(), abs(x) < 1e15 { return String(Int(x)) }
    return String(x)
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    let text = try container.decode(String.self)
    do {
      self = try LRDecay(parsing: text)
    } catch {
      throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(description)
  }
}

/// A learning-rate option that does not parse or does not make sense; the message names the option,
/// what was given and what is accepted.
public struct LRPolicyError: InputError, Equatable, Sendable {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}
