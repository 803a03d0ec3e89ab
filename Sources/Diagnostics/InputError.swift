/// The split every error follows (docs/INTERFACE.md, "Exit statuses"): an `InputError` is the user's to fix (an
/// option, a config file, a data or checkpoint file), is found before training changes anything on disk, is
/// printed as one line and ends the job with status 2. Any other error is a failure while training (status 1).
public protocol InputError: Error, CustomStringConvertible {}

/// A bad input file or folder (a data file, a checkpoint): which one, what was expected and found, what to do.
/// `DatasetError` and `CheckpointError` are its names in their modules.
public struct FileError: InputError, Equatable, Sendable {
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

  /// `"<path>: <problem>. <hint>"`, one line.
  public var description: String { "\(path): \(problem). \(hint)" }
}
