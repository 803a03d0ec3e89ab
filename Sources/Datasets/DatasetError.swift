import Diagnostics

/// A bad or unreadable data file or directory: an input error (exit status 2) naming the file or directory.
public typealias DatasetError = FileError

extension DatasetError {
  static let redownloadHint =
    "Download the file again; `gzip -t FILE` checks a .gz file"
}

/// Runs `body`, whose errors are all `DatasetError`s but reach here untyped (through `withUnsafeBytes` and the
/// like, which only rethrow `any Error`).
func rethrowingDatasetError<Result>(_ body: () throws -> Result) throws(DatasetError) -> Result {
  do {
    return try body()
  } catch let error as DatasetError {
    throw error
  } catch {
    preconditionFailure("only DatasetError is thrown here, not \(error)")
  }
}
