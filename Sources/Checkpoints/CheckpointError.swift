import Diagnostics

/// A bad checkpoint or checkpoint directory: an input error (exit status 2) naming the file or folder.
public typealias CheckpointError = FileError
