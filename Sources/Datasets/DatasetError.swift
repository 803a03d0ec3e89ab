import Diagnostics

/// A bad or unreadable data file or directory: an input error (exit status 2) naming the file or directory.
public typealias DatasetError = FileError

extension DatasetError {
  static let redownloadHint =
    "Download the file again; `gzip -t FILE` checks a .gz file"
}
