import Foundation

/// `word` as a POSIX shell reads it back: bare when it is made of safe characters only, else single-quoted.
/// Every command line ddp-train prints for a user to copy (launch, the scaling report, "continue with") uses it.
public func shellQuoted(_ word: String) -> String {
  let safe = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
  if !word.isEmpty && word.unicodeScalars.allSatisfy(safe.contains) { return word }
  return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
