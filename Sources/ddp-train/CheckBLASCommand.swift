import ArgumentParser
import Foundation
import Tensors

/// `ddp-train check-blas`: `cblas_sgemm` under the kernels this process runs, against a double-precision loop.
struct CheckBLASCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "check-blas",
    abstract: "Check OpenBLAS's GEMM kernels on this CPU against a double-precision loop.",
    discussion: """
      Runs cblas_sgemm at every transposition and at the shapes the MLP and CNN layers use (inner dimensions up to
      3136), under the kernels this process runs (the run header's `blas:` line), and compares each result with a
      loop that sums in double precision. The error of an element is taken relative to the sum of the absolute
      products it adds up. Exit status 0 when every call is within the tolerance, 1 otherwise. To check another
      kernel family: OPENBLAS_CORETYPE=Haswell ddp-train check-blas.
      """)

  @Option(help: "The largest error allowed, relative to the sum of absolute products.")
  var tolerance = 1e-5

  func validate() throws {
    guard tolerance > 0, tolerance.isFinite else {
      throw ValidationError("--tolerance must be a positive number, got \(tolerance)")
    }
  }

  func run() throws {
    print("blas: \(BLAS.kernelDescription)")
    BLAS.setThreadCount(1)
    var worst = 0.0
    for (index, check) in GEMMCheck.cases.enumerated() {
      let error = GEMMCheck.worstError(check, seed: UInt64(index + 1))
      worst = max(worst, error)
      print(String(format: "  %-58@ error %.2e%@", check.description, error, error <= tolerance ? "" : "  FAILED"))
    }
    let verdict = worst <= tolerance ? "ok" : "FAILED"
    print(
      String(
        format: "check-blas: %@ kernels, worst error %.2e (tolerance %.0e): %@", BLAS.coreName, worst, tolerance,
        verdict))
    if worst > tolerance { throw ExitCode(1) }
  }
}
