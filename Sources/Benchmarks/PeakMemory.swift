#if canImport(Glibc)
  import Glibc
#endif

/// The peak resident set size of this process so far, in bytes (getrusage's ru_maxrss, KiB on Linux).
public func peakResidentBytes() -> Int {
  var usage = rusage()
  getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
  return Int(usage.ru_maxrss) * 1024
}
