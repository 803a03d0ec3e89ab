/// A bad checkpoint or checkpoint directory. One line for the user, who gets exit status 2.
///
/// `problem` says what was expected and what was found; `hint` says what to do next.
public struct CheckpointError: Error, CustomStringConvertible, Equatable {
  /// The file or folder at fault.
  public var path: String
  /// What was expected and what was found, without a final period.
  public var problem: String
  /// What the user can do about it, one sentence.
  public var hint: String

  public init(path: String, problem: String, hint: String) {
    self.path = path
    self.problem = problem
    self.hint = hint
  }

  public var description: String { "\(path): \(problem). \(hint)" }
}
