import Foundation

/// A JSON Lines metrics file of one training (docs/INTERFACE.md, "Metrics"), read back: the `run` event, the
/// `epoch` and `step` events in order, and the `diverged` event if there is one.
public struct RunMetrics: Sendable {
  /// One event's fields. Numbers are Doubles; "NaN"/"Infinity" strings read as the non-finite Doubles.
  public struct Event: Sendable {
    public var fields: [String: Field]
    public func number(_ key: String) -> Double? { fields[key]?.number }
    public func integer(_ key: String) -> Int? {
      number(key).flatMap { $0.isFinite ? Int(exactly: $0.rounded()) : nil }
    }
    public func string(_ key: String) -> String? {
      if case .string(let value) = fields[key] { return value }
      return nil
    }
  }

  public enum Field: Sendable, Decodable {
    case number(Double)
    case string(String)
    case bool(Bool)
    case other

    public init(from decoder: any Decoder) throws {
      let container = try decoder.singleValueContainer()
      if let value = try? container.decode(Bool.self) {
        self = .bool(value)
      } else if let value = try? container.decode(Double.self) {
        self = .number(value)
      } else if let value = try? container.decode(String.self) {
        self = .string(value)
      } else {
        self = .other
      }
    }

    var number: Double? {
      switch self {
      case .number(let value): return value
      case .string("NaN"): return .nan
      case .string("Infinity"): return .infinity
      case .string("-Infinity"): return -.infinity
      default: return nil
      }
    }
  }

  public var run: Event?
  public var epochs: [Event] = []
  public var steps: [Event] = []
  public var diverged: Event?

  public init() {}

  /// Reads `path`; a missing file reads as no events. A line that is not a JSON object is skipped (a training
  /// killed mid-write cannot leave one, as each line is one write, but the study must not fail on it).
  public init(path: String) {
    let data = FileManager.default.contents(atPath: path) ?? Data()
    self.init(jsonLines: String(decoding: data, as: UTF8.self))
  }

  public init(jsonLines text: String) {
    let decoder = JSONDecoder()
    for line in text.split(separator: "\n") where !line.isEmpty {
      guard let fields = try? decoder.decode([String: Field].self, from: Data(line.utf8)),
        case .string(let kind) = fields["event"]
      else { continue }
      let event = Event(fields: fields)
      switch kind {
      case "run": run = event
      case "epoch": epochs.append(event)
      case "step": steps.append(event)
      case "diverged": diverged = event
      default: break
      }
    }
  }
}
