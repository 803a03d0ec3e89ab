import Communication

/// Raised on every rank except the one that failed, when `collectively` learns that another rank failed.
/// The failing rank reports; the others stay silent and end with the same exit status.
public struct PeerFailure: Error, CustomStringConvertible {
  public var rank: Int
  public var exitCode: Int32
  public var description: String { "rank \(rank) failed (exit status \(exitCode))" }
}

/// How errors map to exit statuses (docs/INTERFACE.md, "Exit status"). The CLI owns the table; `collectively`
/// needs it to tell the other ranks which status to end with.
nonisolated(unsafe) public var exitCodeForError: (Error) -> Int32 = { _ in 1 }

/// Runs `body` on every rank, then agrees on the outcome with one small all-reduce.
///
/// If `body` threw on any rank, the lowest failing rank (with the highest exit status) rethrows its own error
/// and every other rank throws `PeerFailure`, so the error is reported exactly once and no rank goes on into
/// a collective the failed rank will never join.
public func collectively<T>(_ communicator: Communicator, _ body: () throws -> T) throws -> T {
  var outcome: Result<T, Error>
  do { outcome = .success(try body()) } catch { outcome = .failure(error) }
  // Encoded so that max() picks the highest exit status, then the lowest rank: code·2^20 + (2^20 − 1 − rank).
  var flag: [Int64] = [0]
  if case .failure(let error) = outcome {
    flag[0] = Int64(exitCodeForError(error)) << 20 + Int64((1 << 20) - 1 - communicator.rank)
  }
  try flag.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }
  guard flag[0] != 0 else { return try outcome.get() }
  let failedRank = Int((1 << 20) - 1 - (flag[0] & ((1 << 20) - 1)))
  let code = Int32(flag[0] >> 20)
  if failedRank == communicator.rank, case .failure(let error) = outcome { throw error }
  throw PeerFailure(rank: failedRank, exitCode: code)
}
