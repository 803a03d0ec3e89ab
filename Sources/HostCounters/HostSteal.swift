import Foundation

/// The share of CPU time a hypervisor gave to other guests while this host's vCPUs wanted to run ("steal" in
/// /proc/stat). A synchronous step waits for its slowest rank, so every stolen slice of any rank's vCPU stalls all
/// of them: the figure says how much of a multi-rank benchmark's waiting the machine, not the program, caused.
package struct CPUTimes: Equatable, Sendable {
  /// Jiffies of every state on the aggregate `cpu` line (user … steal; guest time is already inside user).
  package var total: UInt64
  package var steal: UInt64

  /// Parses the aggregate line of /proc/stat: `cpu user nice system idle iowait irq softirq steal [guest …]`.
  /// nil when the text has no such line (not Linux, or a kernel older than 2.6.11 without the steal column).
  package static func parse(procStat text: String) -> CPUTimes? {
    guard
      let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
    else { return nil }
    let fields = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
    guard fields.count >= 8 else { return nil }
    return CPUTimes(total: fields[0..<8].reduce(0, +), steal: fields[7])
  }

  /// This host's counters now, or nil where /proc/stat cannot be read.
  package static func current() -> CPUTimes? {
    (try? String(contentsOfFile: "/proc/stat", encoding: .utf8)).flatMap(parse(procStat:))
  }

  /// The fraction of the CPU time between `earlier` and `self` that was stolen; nil when no time passed.
  package func stealFraction(since earlier: CPUTimes) -> Double? {
    guard total > earlier.total, steal >= earlier.steal else { return nil }
    return Double(steal - earlier.steal) / Double(total - earlier.total)
  }
}
