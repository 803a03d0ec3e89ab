import Foundation
import TestSupport
import Testing

/// `plot` through the built binary: the charts of two real trainings (one alone, one under mpirun), and bad inputs
/// that exit 2 with one message and write nothing.
@Suite(.serialized)
struct PlotCommandTests {
  static let tiny = [
    "--dataset", "synthetic", "--synthetic-train", "512", "--synthetic-test", "128", "--model", "mlp:16",
    "--batch-size", "16", "--epochs", "3",
  ]
  static let chartNames = [
    "train-loss.svg", "test-loss.svg", "test-accuracy.svg", "learning-rate.svg", "samples-per-second.svg",
  ]

  /// The "L" segments of each data line (`<path` drawn with fill="none") of an SVG document.
  static func segmentCounts(_ svg: String) -> [Int] {
    svg.components(separatedBy: "<path ").dropFirst().compactMap { element in
      guard element.contains("fill=\"none\""),
        let data = element.components(separatedBy: "d=\"").dropFirst().first?.components(separatedBy: "\"").first
      else { return nil }
      return data.components(separatedBy: "L").count - 1
    }
  }

  @Test(
    "two trainings, K=1 and K=2 under mpirun: five charts with two lines each",
    .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
  func twoRunsFiveCharts() throws {
    let scratch = try makeScratchDirectory("plot")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let alone = scratch.appendingPathComponent("alone.jsonl").path
    let pair = scratch.appendingPathComponent("pair.jsonl").path
    let first = try DDPTrainProcess.run(Self.tiny + ["--metrics", alone])
    #expect(first.status == 0, "\(first.output)")
    let second = try DDPTrainProcess.mpirun(ranks: 2, Self.tiny + ["--metrics", pair])
    #expect(second.status == 0, "\(second.output)")

    let out = scratch.appendingPathComponent("charts").path
    let result = try DDPTrainProcess.run(["plot", "--metrics", alone, pair, "--out", out])
    #expect(result.status == 0, "\(result.output)")
    let lines = result.stdout.split(separator: "\n")
    #expect(lines.count == 5, "\(result.stdout)")
    for name in Self.chartNames {
      #expect(lines.contains { $0.hasPrefix("wrote \(out)/\(name)") }, "\(result.stdout)")
    }
    // Only the charts: no temporary file left behind.
    #expect(try FileManager.default.contentsOfDirectory(atPath: out).sorted() == Self.chartNames.sorted())
    // 512 samples, global batch 16 alone (32 steps per epoch) and 2 × 16 = 32 (16 steps); 3 epochs, a step event
    // every step: 96 and 48 steps, so 95 and 47 segments; 3 epoch events, so 2 segments.
    let expected: [String: [Int]] = [
      "train-loss.svg": [95, 47], "learning-rate.svg": [95, 47], "test-loss.svg": [2, 2], "test-accuracy.svg": [2, 2],
      "samples-per-second.svg": [2, 2],
    ]
    for name in Self.chartNames {
      let svg = try String(contentsOfFile: "\(out)/\(name)", encoding: .utf8)
      #expect(Self.segmentCounts(svg) == expected[name], "\(name)")
      #expect(svg.contains(">K=1 × B=16</text>") && svg.contains(">K=2 × B=16</text>"), "\(name)")
      #expect(svg.contains(">optimizer step</text>"), "\(name)")
    }

    // By epoch, with names of our own, into the same folder (overwritten whole).
    let byEpoch = try DDPTrainProcess.run([
      "plot", "--metrics", alone, pair, "--out", out, "--x", "epoch", "--label", "alone", "--label", "two ranks",
    ])
    #expect(byEpoch.status == 0, "\(byEpoch.output)")
    let accuracy = try String(contentsOfFile: "\(out)/test-accuracy.svg", encoding: .utf8)
    #expect(accuracy.contains(">epoch</text>") && accuracy.contains(">alone</text>"))
    #expect(accuracy.contains(">two ranks</text>"))
    #expect(Self.segmentCounts(accuracy) == [2, 2])
  }

  @Test(
    "a job restarted by launch --max-restarts: each of its 48 steps drawn once, the restart noted",
    .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
  func restartedJobDrawsEachStepOnce() throws {
    let scratch = try makeScratchDirectory("plot-restart")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let metrics = scratch.appendingPathComponent("metrics.jsonl").path
    var train = ""
    for (index, word) in Self.tiny.enumerated() where word.hasPrefix("--") {
      train += "  \(word.dropFirst(2)): \(Self.tiny[index + 1])\n"
    }
    train += "  checkpoint-every: 20\n  checkpoint-dir: \(scratch.path)/ck\n  metrics: \(metrics)\n"
    let config = scratch.appendingPathComponent("cluster.yaml").path
    try "cluster:\n  hosts:\n    - name: localhost\n      slots: 2\ntrain:\n\(train)".write(
      toFile: config, atomically: true, encoding: .utf8)
    // Rank 1 crashes once at step 30; launch restarts the job from the checkpoint of step 20.
    let job = try DDPTrainProcess.run(
      ["launch", "--config", config, "--max-restarts", "2", "--", "--inject-fault", "crash@1:30:once"], timeout: 150)
    #expect(job.status == 0, "\(job.output)")
    let logged = try String(contentsOfFile: metrics, encoding: .utf8).components(separatedBy: "\"event\":\"step\"")
    #expect(logged.count - 1 > 48, "steps 20 and on are logged twice")

    let out = scratch.appendingPathComponent("charts").path
    let result = try DDPTrainProcess.run(["plot", "--metrics", metrics, "--out", out])
    #expect(result.status == 0, "\(result.output)")
    // 2 × 16 of 512 samples: 16 steps per epoch, 48 steps in all, so 47 segments; 3 epochs, 2 segments.
    let loss = try String(contentsOfFile: "\(out)/train-loss.svg", encoding: .utf8)
    #expect(Self.segmentCounts(loss) == [47])
    #expect(loss.contains("K=2 × B=16: 1 restart"))
    let accuracy = try String(contentsOfFile: "\(out)/test-accuracy.svg", encoding: .utf8)
    #expect(Self.segmentCounts(accuracy) == [2])
  }

  /// Runs `plot arguments` expecting an input error: status 2, one message with `words`, nothing written in `out`.
  func expectInputError(_ arguments: [String], out: String, mentions words: [String]) throws {
    let before = try? FileManager.default.contentsOfDirectory(atPath: out)
    let result = try DDPTrainProcess.run(["plot"] + arguments + ["--out", out], timeout: 60)
    #expect(result.status == 2, "\(arguments): status \(result.status)\n\(result.output)")
    for word in words {
      #expect(result.stderr.contains(word), "\(arguments) should mention \(word):\n\(result.stderr)")
    }
    let reports = result.stderr.components(separatedBy: "ddp-train: ").count - 1
    #expect(reports == 1, "one message expected, got \(reports):\n\(result.stderr)")
    #expect(result.stdout.isEmpty, "\(result.stdout)")
    #expect((try? FileManager.default.contentsOfDirectory(atPath: out)) == before, "\(out) changed")
  }

  @Test("bad inputs exit 2 with one message and write nothing")
  func badInputs() throws {
    let scratch = try makeScratchDirectory("plot-bad")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let good = scratch.appendingPathComponent("good.jsonl").path
    try """
    {"event":"run","world_size":1,"batch_size":16,"steps_per_epoch":2}
    {"event":"step","step":0,"epoch":1,"lr":0.1,"loss":2.3}
    {"event":"step","step":1,"epoch":1,"lr":0.1,"loss":2.1}
    {"event":"epoch","epoch":1,"step":2,"train_loss":2.2,"test_loss":2,"test_accuracy":0.2,"samples_per_sec":50}

    """.write(toFile: good, atomically: true, encoding: .utf8)
    let notJSON = scratch.appendingPathComponent("broken.jsonl").path
    try (try String(contentsOfFile: good, encoding: .utf8) + "epoch 2 went well\n")
      .write(toFile: notJSON, atomically: true, encoding: .utf8)
    let missing = scratch.appendingPathComponent("missing.jsonl").path
    let out = scratch.appendingPathComponent("charts").path

    try expectInputError(["--metrics", good, missing], out: out, mentions: [missing, "no such file"])
    try expectInputError(["--metrics", good, notJSON], out: out, mentions: [notJSON, "line 5", "not JSON"])
    try expectInputError(["--metrics", good, "--label", "a", "--label", "b"], out: out, mentions: ["--label"])
    try expectInputError(["--metrics", good, "--x", "month"], out: out, mentions: ["--x", "month"])
    #expect(!FileManager.default.fileExists(atPath: out), "--out created despite the error")

    // --out an existing regular file, or a path under one.
    let file = scratch.appendingPathComponent("notes.txt").path
    try "keep me\n".write(toFile: file, atomically: true, encoding: .utf8)
    try expectInputError(["--metrics", good], out: file, mentions: ["--out", file, "a file"])
    try expectInputError(["--metrics", good], out: file + "/charts", mentions: ["--out", file])
    #expect(try String(contentsOfFile: file, encoding: .utf8) == "keep me\n")
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: scratch.path).sorted()
        == ["broken.jsonl", "good.jsonl", "notes.txt"])

    // The good file alone plots.
    let fine = try DDPTrainProcess.run(["plot", "--metrics", good, "--out", out])
    #expect(fine.status == 0, "\(fine.output)")
    #expect(try FileManager.default.contentsOfDirectory(atPath: out).count == 5)
  }
}
