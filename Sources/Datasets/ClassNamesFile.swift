import Foundation

/// `--class-names FILE`: one class name per line, in label order (line 1 names class 0). A final newline is
/// optional, and a line's trailing `\r` and surrounding spaces are dropped.
enum ClassNamesFile {
  static func read(_ path: String, classCount: Int) throws(DatasetError) -> [String] {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw DatasetError(
        path: path, problem: "cannot read the class names file",
        hint: "Pass --class-names with a text file of one class name per line")
    }
    guard let text = String(data: data, encoding: .utf8) else {
      throw DatasetError(path: path, problem: "the class names file is not UTF-8 text", hint: "Save it as UTF-8")
    }
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
      $0.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    if lines.last == "" { lines.removeLast() }
    if let empty = lines.firstIndex(of: "") {
      throw DatasetError(
        path: path, problem: "line \(empty + 1) is empty; expected one class name per line",
        hint: "Give every class a name, in label order")
    }
    guard lines.count == classCount else {
      throw DatasetError(
        path: path, problem: "names \(lines.count) classes; the data has \(classCount)",
        hint: "One line per class, in label order (line 1 names class 0)")
    }
    return lines
  }
}
