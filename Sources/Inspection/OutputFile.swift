import Foundation
import Training

/// A picture or report file the user asked for: checked before any work (so a bad path writes nothing and
/// exits 2), then written whole or not at all (a temporary file in the same folder, renamed into place).
public struct OutputFile {
  public enum Format: String { case png, svg }

  public let path: String
  public let format: Format

  /// `option` names the command-line option in the message. The folder must exist and be writable, the path must
  /// not be a folder, and its extension must be one of `formats`.
  public init(path: String, option: String, formats: [Format]) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
      throw ConfigurationError(
        option: option, expected: "a file to write", found: "'\(path)', which is a folder",
        hint: "Name a file inside it, e.g. \(path)/picture.\(formats[0].rawValue).")
    }
    let allowed = formats.map { ".\($0.rawValue)" }.joined(separator: " or ")
    guard let format = Format(rawValue: (path as NSString).pathExtension.lowercased()), formats.contains(format)
    else {
      throw ConfigurationError(
        option: option, expected: "a file name ending in \(allowed)", found: "'\(path)'",
        hint: "The extension chooses the format.")
    }
    let folder =
      (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue,
      access(folder, W_OK) == 0
    else {
      throw ConfigurationError(
        option: option, expected: "a file in an existing folder that can be written", found: "'\(path)'",
        hint: "Create the folder \(folder) first, or choose another place.")
    }
    self.path = path
    self.format = format
  }

  /// Writes `bytes` atomically (rename of a complete temporary file). A failure now is an I/O failure.
  public func write(_ bytes: [UInt8]) throws {
    let temporary = path + ".tmp-\(getpid())"
    do {
      try Data(bytes).write(to: URL(fileURLWithPath: temporary))
      guard rename(temporary, path) == 0 else {
        throw TrainingError.io(path: path, message: String(cString: strerror(errno)))
      }
    } catch let error as TrainingError {
      unlink(temporary)
      throw error
    } catch {
      unlink(temporary)
      throw TrainingError.io(path: path, message: "\(error.localizedDescription)")
    }
  }
}
