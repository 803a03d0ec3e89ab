import Checkpoints
import Foundation

/// docs/INTERFACE.md's JSON Lines metrics file: rank 0 appends one object per line, each with "event".
///
/// Each line is written with one `write(2)` on an O_APPEND descriptor (a short write on a full disk is finished
/// or taken back), so a reader never sees half an object from us. Non-finite numbers are written as the strings
/// "NaN"/"Infinity"/"-Infinity" (JSON has no literal for them).
public final class MetricsLog {
  public let path: String
  private let descriptor: Int32

  /// Opens (creating if needed) `path` for appending; the parent directory is created.
  public init(path: String) throws {
    self.path = path
    let parent = (path as NSString).deletingLastPathComponent
    if !parent.isEmpty { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) }
    descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw TrainingError.io(path: path, message: String(cString: strerror(errno)))
    }
  }

  deinit { close(descriptor) }

  /// Appends `{"event": event, ...fields}` as one line. Keys are written sorted, "event" first.
  public func append(_ event: String, _ fields: [String: MetricValue]) throws {
    var line = "{\"event\":\(MetricValue.string(event).json)"
    for key in fields.keys.sorted() {
      line += ",\(MetricValue.string(key).json):\(fields[key]!.json)"
    }
    line += "}\n"
    let bytes = Array(line.utf8)
    var written = 0
    while written < bytes.count {
      let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
      if count < 0 && errno == EINTR { continue }
      guard count > 0 else {
        let problem = count < 0 ? String(cString: strerror(errno)) : "nothing written"
        // A disk that filled mid-line: take the part back (this process is the file's one writer, so its end is
        // that part's end), and every line in the file stays whole JSON.
        var size = stat()
        if written > 0 && fstat(descriptor, &size) == 0 { _ = ftruncate(descriptor, size.st_size - off_t(written)) }
        throw TrainingError.io(
          path: path, message: "\(problem) (appending its \(event) event; the lines before it are complete)")
      }
      written += count
    }
  }
}

/// A JSON value in a metrics event.
public enum MetricValue: Sendable, Equatable {
  case int(Int)
  case double(Double)
  case string(String)
  case bool(Bool)
  case array([MetricValue])

  var json: String {
    switch self {
    case .int(let value): return String(value)
    case .bool(let value): return value ? "true" : "false"
    case .double(let value):
      if value.isNaN { return "\"NaN\"" }
      if value.isInfinite { return value > 0 ? "\"Infinity\"" : "\"-Infinity\"" }
      // Shortest representation that round-trips; integral doubles keep a ".0"-free form JSON accepts.
      return "\(value)"
    case .string(let value): return SafeTensors.jsonString(value)
    case .array(let values): return "[" + values.map(\.json).joined(separator: ",") + "]"
    }
  }
}

extension MetricValue: ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByStringLiteral {
  public init(integerLiteral value: Int) { self = .int(value) }
  public init(floatLiteral value: Double) { self = .double(value) }
  public init(stringLiteral value: String) { self = .string(value) }
}
