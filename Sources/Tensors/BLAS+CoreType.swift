import COpenBLAS

#if canImport(Glibc)
  import Glibc
#endif

extension BLAS {
  /// The kernel family OpenBLAS chose when it was loaded ("Haswell", "SkylakeX", "Cooperlake", ...): detected
  /// from the CPU, or forced by the `OPENBLAS_CORETYPE` environment variable, which it reads once at load time.
  public static var coreName: String {
    guard let name = openblas_get_corename() else { return "unknown" }
    return String(cString: name)
  }

  /// `OPENBLAS_CORETYPE` when the environment forces the kernel family, else nil.
  public static var forcedCoreType: String? {
    getenv("OPENBLAS_CORETYPE").map { String(cString: $0) }
  }
}
