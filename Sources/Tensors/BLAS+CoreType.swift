import CKernels
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

  /// OpenBLAS kernel families with AVX-512 GEMM kernels.
  static let avx512Cores: Set<String> = ["skylakex", "cooperlake", "sapphirerapids"]

  /// One line for the user when `OPENBLAS_CORETYPE` holds OpenBLAS to narrower kernels than this CPU runs
  /// (Haswell's AVX2 on an AVX-512 CPU: the GEMMs ran 1.6-1.8× slower on this model), else nil.
  public static var narrowKernelsNote: String? {
    guard let forced = forcedCoreType, ddp_cpu_has_avx512(), !avx512Cores.contains(coreName.lowercased()) else {
      return nil
    }
    return "OPENBLAS_CORETYPE=\(forced) holds OpenBLAS to \(coreName) kernels on this AVX-512 CPU;"
      + " unset it for faster GEMMs (see BENCHMARKS.md)"
  }
}
