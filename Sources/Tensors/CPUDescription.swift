import Foundation

/// The CPU this process runs on, as Linux's `/proc/cpuinfo` describes its first processor: enough to decide which
/// OpenBLAS kernels it can run, and to name it in the run header.
public struct CPUDescription: Sendable, Equatable {
  /// `vendor_id`: "GenuineIntel", "AuthenticAMD", "HygonGenuine", ...
  public var vendor: String
  /// `cpu family` and `model`, as `lscpu` prints them.
  public var family: Int
  public var model: Int
  /// The `flags` line: the instruction-set extensions the CPU has and the kernel enabled ("avx2", "avx512f", ...).
  public var flags: Set<String>
  /// `model name`: "AMD EPYC", "Intel(R) Xeon(R) Platinum 8488C", ...; empty where the entry has none.
  public var modelName: String

  public init(vendor: String, family: Int, model: Int, flags: Set<String>, modelName: String = "") {
    self.vendor = vendor
    self.family = family
    self.model = model
    self.flags = flags
    self.modelName = modelName
  }

  /// The first processor's entry of a `/proc/cpuinfo` text; nil when it has no `flags` line (not x86, or not Linux).
  public init?(cpuinfo: String) {
    var fields: [String: String] = [:]
    for line in cpuinfo.split(separator: "\n", omittingEmptySubsequences: false) {
      // Entries are separated by an empty line; the first processor's is enough (all cores are alike here).
      if line.trimmingCharacters(in: .whitespaces).isEmpty {
        if fields.isEmpty { continue } else { break }
      }
      guard let colon = line.firstIndex(of: ":") else { continue }
      let key = line[..<colon].trimmingCharacters(in: .whitespaces)
      if fields[key] == nil { fields[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
    }
    guard let flags = fields["flags"] else { return nil }
    self.init(
      vendor: fields["vendor_id"] ?? "unknown", family: fields["cpu family"].flatMap { Int($0) } ?? 0,
      model: fields["model"].flatMap { Int($0) } ?? 0,
      flags: Set(flags.split(separator: " ").map(String.init)), modelName: fields["model name"] ?? "")
  }

  /// This machine's CPU, read once; nil where `/proc/cpuinfo` says nothing usable.
  public static let current: CPUDescription? = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))
    .flatMap { CPUDescription(cpuinfo: $0) }

  /// "family 6 model 207", as the header names the CPU.
  public var familyAndModel: String { "family \(family) model \(model)" }

  /// "AMD EPYC, family 23 model 1", as reports name the machine their figures come from.
  public var name: String { modelName.isEmpty ? familyAndModel : "\(modelName), \(familyAndModel)" }

  /// AMD's and Hygon's CPUs, for which OpenBLAS's AVX2 family is called Zen rather than Haswell.
  public var isAMD: Bool { vendor == "AuthenticAMD" || vendor == "HygonGenuine" }
}
