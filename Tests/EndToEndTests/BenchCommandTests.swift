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

  /// The arithmetic ceiling counts the step's convolution and linear GEMMs as im2col makes them, whichever method
  /// runs: for conv4k3p1 on 1×28×28 (first layer, no dx) 2 × 2·4·784·9 FLOP, and for the Linear(784, 10) after the
  /// pooling 3 × 2·784·10 (its dx included): 159,936 FLOP per sample.
  @Test func arithmeticCeilingCountsTheIm2colArithmetic() throws {
    let result = try DDPTrainProcess.run(
      [
        "bench", "--dataset", "synthetic", "--synthetic-train", "512", "--model",
        "seq:conv4k3p1,relu,pool2,flatten,linear10", "--batch-size", "16", "--windows", "1", "--warmup", "0",
        "--json",
      ], timeout: 120)
    #expect(result.status == 0, "\(result.output)")
    #expect(result.stdout.contains("arithmetic ceiling:"), "\(result.stdout)")
    let line = try #require(result.stdout.split(separator: "\n").last { $0.hasPrefix("{") })
    let object = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    let perSample = try #require(object["arithmetic_mflop_per_sample"] as? Double)
    #expect(abs(perSample - 0.159936) < 1e-9, "\(perSample) MFLOP per sample")
    #expect((object["arithmetic_ceiling_samples_per_sec"] as? Double ?? 0) > 0)

    // Time per layer, in model order, and by kind; together no more than the step.
    #expect(result.stdout.contains("per layer kind (ms/step"), "\(result.stdout)")
    let layers = try #require(object["ms_per_layer"] as? [[String: Any]])
    #expect(
      layers.compactMap { $0["layer"] as? String } == [
        "0 Conv2d 3x3/1 1→4 columns", "1 ReLU", "2 MaxPool2d", "3 Flatten", "4 Linear",
      ])
    let kinds = try #require(object["ms_per_layer_kind"] as? [String: Double])
    #expect(Set(kinds.keys) == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"])
    let total = layers.reduce(0) { $0 + ($1["forward"] as? Double ?? -1) + ($1["backward"] as? Double ?? -1) }
    #expect(total > 0 && total <= (object["ms_step"] as? Double ?? 0), "\(total) ms in layers")
    #expect(abs(kinds.values.reduce(0, +) - total) < 1e-9)
  }

  /// The layers inside a residual block count as their own kinds; the block keeps only its own passes, and the
  /// kinds still add up to the layers' total.
  @Test func layerKindsLookInsideResidualBlocks() throws {
    let result = try DDPTrainProcess.run(
      [
        "bench", "--dataset", "synthetic", "--synthetic-train", "256", "--model",
        "seq:conv8k3p1,bn,relu,res(conv8k3p1,bn,relu,conv8k3p1,bn),relu,gap,linear10", "--batch-size", "16",
        "--windows", "1", "--warmup", "0", "--json",
      ], timeout: 120)
    #expect(result.status == 0, "\(result.output)")
    let line = try #require(result.stdout.split(separator: "\n").last { $0.hasPrefix("{") })
    let object = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    let layers = try #require(object["ms_per_layer"] as? [[String: Any]])
    let kinds = try #require(object["ms_per_layer_kind"] as? [String: Double])
    #expect(
      Set(kinds.keys) == ["Conv2d", "BatchNorm", "ReLU", "ResidualBlock", "GlobalAveragePool", "Linear"])
    func time(_ index: Int) -> Double {
      (layers[index]["forward"] as? Double ?? -1) + (layers[index]["backward"] as? Double ?? -1)
    }
    let total = layers.indices.reduce(0) { $0 + time($1) }
    #expect(abs(kinds.values.reduce(0, +) - total) < 1e-6 * total, "\(kinds) against \(total) ms")
    // Layer 3 is the block: its two convolutions and batch norms are counted as theirs, not as the block's.
    #expect(kinds["ResidualBlock"]! < time(3) / 2, "\(kinds), block \(time(3)) ms")
    #expect(kinds["Conv2d"]! > time(0) + time(3) / 3, "\(kinds)")
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
