/// Which of OpenBLAS's x86-64 kernel families a process should run, decided from what OpenBLAS picked and what the
/// CPU can run. A pure function, so that every case (an Intel model OpenBLAS does not know, a Zen 4, a user's own
/// `OPENBLAS_CORETYPE`) is a unit test; `ddp-train` applies it at start-up by re-executing itself.
///
/// Note [Unknown CPU models]: OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its GEMM kernels once, when the
/// library loads, from a table of CPU models. A model newer than its table gets the generic Prescott (SSE3) kernels:
/// on an AVX-512 Xeon (family 6 model 207) that made every GEMM 3.5-4.5× slower than the Cooperlake kernels the CPU
/// runs. Forcing a family through `OPENBLAS_CORETYPE` works, but only in the environment the library is loaded with.
public enum BLASKernelChoice {
  /// A kernel family ddp-train may force, from narrowest to widest; the raw value orders them by vector width.
  public enum Family: Int, Comparable, CaseIterable, Sendable {
    case prescott = 1
    case core2
    case nehalem
    case sandybridge
    case haswell
    case skylakeX
    case cooperlake

    public static func < (a: Family, b: Family) -> Bool { a.rawValue < b.rawValue }

    /// `/proc/cpuinfo` flags a CPU needs for the family's kernels (the instructions they are compiled for).
    public var requiredFlags: Set<String> {
      switch self {
      case .prescott: ["sse3_or_pni"]
      case .core2: ["ssse3"]
      case .nehalem: ["sse4_2", "popcnt"]
      case .sandybridge: ["avx"]
      case .haswell: ["avx", "avx2", "fma"]
      case .skylakeX: ["avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
      case .cooperlake: Family.skylakeX.requiredFlags.union(["avx512_bf16"])
      }
    }

    /// The name `OPENBLAS_CORETYPE` takes and `openblas_get_corename()` returns. OpenBLAS calls its AVX2 family
    /// Zen on AMD and Hygon CPUs (the same kernels with AMD's cache blocking).
    public func openBLASName(amd: Bool) -> String {
      switch self {
      case .prescott: "Prescott"
      case .core2: "Core2"
      case .nehalem: "Nehalem"
      case .sandybridge: "Sandybridge"
      case .haswell: amd ? "Zen" : "Haswell"
      case .skylakeX: "SkylakeX"
      case .cooperlake: "Cooperlake"
      }
    }

    /// Whether `cpu` lists every instruction-set extension this family's kernels use.
    public func runs(on cpu: CPUDescription) -> Bool {
      requiredFlags.allSatisfy { flag in
        // The kernel's /proc/cpuinfo calls SSE3 "pni" (Prescott New Instructions).
        flag == "sse3_or_pni" ? cpu.flags.contains("pni") || cpu.flags.contains("sse3") : cpu.flags.contains(flag)
      }
    }

    /// The widest family `cpu` runs, or nil when it runs none of them (not an x86-64 CPU with SSE3).
    public static func widest(on cpu: CPUDescription) -> Family? {
      allCases.reversed().first { $0.runs(on: cpu) }
    }
  }

  /// How wide the kernels of an OpenBLAS family name are, on the scale of `Family`, including the families
  /// ddp-train never forces (older AMD and Intel cores); nil for a name this table does not know.
  public static func width(ofCoreNamed name: String) -> Family? {
    switch name.lowercased() {
    case "prescott", "katmai", "coppermine", "northwood", "banias", "athlon", "opteron", "opteron_sse3", "barcelona",
      "bobcat", "nano":
      .prescott
    case "core2", "penryn", "dunnington", "atom": .core2
    case "nehalem": .nehalem
    case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": .sandybridge
    case "haswell", "zen": .haswell
    case "skylakex": .skylakeX
    case "cooperlake", "sapphirerapids": .cooperlake
    default: nil
    }
  }

  /// The instruction-set extensions `coreType`'s kernels use and `cpu` lacks: empty when it runs them, or when
  /// `coreType` is not one of the families this table knows. OpenBLAS does not check: forcing SkylakeX on an AVX2 CPU
  /// stops the process with an illegal instruction at its first GEMM.
  public static func missingInstructions(coreType: String, cpu: CPUDescription) -> [String] {
    let name = coreType.lowercased()
    guard
      let family = Family.allCases.first(where: {
        $0.openBLASName(amd: false).lowercased() == name || $0.openBLASName(amd: true).lowercased() == name
      }), !family.runs(on: cpu)
    else { return [] }
    return family.requiredFlags.subtracting(cpu.flags).sorted().map { $0 == "sse3_or_pni" ? "sse3" : $0 }
  }

  /// The family name to force through `OPENBLAS_CORETYPE`, or nil to keep what OpenBLAS runs.
  ///
  /// - `detected`: what OpenBLAS picked by itself (`openblas_get_corename()` with no `OPENBLAS_CORETYPE`).
  /// - `userCoreType`: the user's own `OPENBLAS_CORETYPE`; a non-empty one is always kept (an empty one makes
  ///   OpenBLAS detect, as if unset).
  ///
  /// Forces the widest family the CPU runs when OpenBLAS settled on a narrower one (its fallback for a model it does
  /// not know); never narrows, and leaves unknown family names alone.
  public static func familyToForce(detected: String, userCoreType: String?, cpu: CPUDescription) -> String? {
    if let userCoreType, !userCoreType.isEmpty { return nil }
    guard let widest = Family.widest(on: cpu), let running = width(ofCoreNamed: detected), running < widest else {
      return nil
    }
    return widest.openBLASName(amd: cpu.isAMD)
  }
}
