import Foundation
import TestSupport
import Testing

/// `ddp-train bench` runs alone and under mpirun and prints its figures (their values are not asserted: timing
/// belongs in BENCHMARKS.md, not in tests).
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct BenchCommandTests {
  static let arguments = [
    "bench", "--dataset", "synthetic", "--synthetic-train", "1024", "--model", "mlp:32", "--batch-size", "16",
    "--windows", "2", "--warmup", "1", "--no-gemm-reference",
  ]

  @Test func benchAlone() throws {
    let result = try DDPTrainProcess.run(Self.arguments, timeout: 120)
    #expect(result.status == 0, "\(result.output)")
    #expect(result.stdout.contains("samples/s:"), "\(result.stdout)")
    #expect(result.stdout.contains("peak RSS"), "\(result.stdout)")
  }

  @Test func benchUnderMPI() throws {
    let result = try DDPTrainProcess.mpirun(ranks: 2, Self.arguments + ["--overlap"], timeout: 120)
    #expect(result.status == 0, "\(result.output)")
    #expect(result.stdout.contains("K=2"), "\(result.stdout)")
    #expect(result.stdout.contains("samples/s:"), "\(result.stdout)")
    #expect(result.stdout.contains("gradients: MPI all-reduce in buckets"), "\(result.stdout)")
  }

  @Test func benchUnderMPISharesMemoryAndSplitsTheExposedTime() throws {
    let result = try DDPTrainProcess.mpirun(ranks: 2, Self.arguments, timeout: 120)
    #expect(result.status == 0, "\(result.output)")
    #expect(result.stdout.contains("gradients: shared memory (2 ranks on one host)"), "\(result.stdout)")
    #expect(result.stdout.contains("waiting for the last rank to arrive"), "\(result.stdout)")
  }
}
