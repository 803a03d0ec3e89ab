import COpenBLAS

#if canImport(Glibc)
  import Glibc
#endif

extension BLAS {
  /// The kernel family OpenBLAS chose when it was loaded ("Haswell", "Zen", "SkylakeX", "Cooperlake", ...): detected
  /// from the CPU, or forced by the `OPENBLAS_CORETYPE` environment variable, which it reads once at load time.
  public static var coreName: String {
    guard let name = openblas_get_corename() else { return "unknown" }
    return String(cString: name)
  }

  /// OpenBLAS's version ("0.3.21"), from the first words of `openblas_get_config()`.
  public static var version: String {
    guard let config = openblas_get_config() else { return "" }
    let words = String(cString: config).split(separator: " ")
    return words.count > 1 && words[0] == "OpenBLAS" ? String(words[1]) : ""
  }

  /// `OPENBLAS_CORETYPE` when the environment forces the kernel family (the user's or ddp-train's), else nil.
  public static var forcedCoreType: String? {
    guard let value = getenv("OPENBLAS_CORETYPE").map({ String(cString: $0) }), !value.isEmpty else { return nil }
    return value
  }

  /// The environment variable through which a process that forced `OPENBLAS_CORETYPE` itself tells its re-executed
  /// self (and the ranks `launch` and `scaling` start) what OpenBLAS had picked: `DETECTED>FORCED`, e.g.
  /// `Prescott>Cooperlake`. An `OPENBLAS_CORETYPE` that differs from FORCED is the user's.
  public static let fallbackVariable = "DDP_TRAIN_BLAS_FALLBACK"

  /// Where this process's kernel family came from.
  public enum KernelSource: Equatable, Sendable {
    /// OpenBLAS picked it from the CPU.
    case detected
    /// The user's `OPENBLAS_CORETYPE`.
    case user(String)
    /// ddp-train forced `forced` because OpenBLAS had fallen back to `detected` (Note [Unknown CPU models]).
    case fallbackReplaced(detected: String, forced: String)
  }

  public static var kernelSource: KernelSource {
    guard let forced = forcedCoreType else { return .detected }
    if let marker = getenv(fallbackVariable).map({ String(cString: $0) }) {
      let parts = marker.split(separator: ">").map(String.init)
      if parts.count == 2, parts[1] == forced { return .fallbackReplaced(detected: parts[0], forced: forced) }
    }
    return .user(forced)
  }

  /// What the run header says of the GEMM kernels, e.g. `OpenBLAS Cooperlake kernels (OpenBLAS 0.3.21 fell back to
  /// Prescott on this CPU, family 6 model 207)`.
  public static var kernelDescription: String {
    let running = "OpenBLAS \(coreName) kernels"
    switch kernelSource {
    case .detected:
      return running
    case .user(let forced):
      return running + " (forced by OPENBLAS_CORETYPE=\(forced))"
    case .fallbackReplaced(let detected, let forced):
      let cpu = CPUDescription.current.map { ", \($0.familyAndModel)" } ?? ""
      let missing = coreName.lowercased() == forced.lowercased() ? "" : ", and has no \(forced) kernels"
      return running + " (OpenBLAS \(version) fell back to \(detected) on this CPU\(cpu)\(missing))"
    }
  }

  /// One line for the user when OpenBLAS runs narrower kernels than this CPU runs, else nil: the user's
  /// `OPENBLAS_CORETYPE` holds it there, or forcing a wider family did not take.
  public static var narrowKernelsNote: String? {
    guard let cpu = CPUDescription.current, let widest = BLASKernelChoice.Family.widest(on: cpu),
      let running = BLASKernelChoice.width(ofCoreNamed: coreName), running < widest
    else { return nil }
    let wider = widest.openBLASName(amd: cpu.isAMD)
    if case .user(let forced) = kernelSource {
      return "OPENBLAS_CORETYPE=\(forced) holds OpenBLAS to \(coreName) kernels on this CPU, which runs \(wider)"
        + " kernels; unset it for faster GEMMs (see BENCHMARKS.md)"
    }
    return "OpenBLAS runs \(coreName) kernels on this CPU, which runs \(wider) kernels;"
      + " OPENBLAS_CORETYPE=\(wider) gives faster GEMMs (see BENCHMARKS.md)"
  }
}
