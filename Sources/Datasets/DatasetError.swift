/// A bad or unreadable data file or directory. Printed as one line to the user, who gets exit status 2.
///
/// Every instance names the file or directory, says what was expected and what was found, and what to do next,
/// so the CLI can print `description` as is.
public struct DatasetError: Error, CustomStringConvertible, Equatable {
  /// The file or directory concerned.
  public var path: String
  /// What is wrong, with the expected and the found values.
  public var problem: String
  /// What to do next.
  public var hint: String

  public init(path: String, problem: String, hint: String) {
    self.path = path
    self.problem = problem
    self.hint = hint
  }

  /// `"<path>: <problem>. <hint>"`, one line.
  public var description: String { "\(path): \(problem). \(hint)" }
}

extension DatasetError {
  static let redownloadHint =
    "Download the file again; `gzip -t FILE` checks a .gz file"
}
