import Diagnostics
import Foundation
import Inspection
import Testing

/// Metrics files written by hand → the series `plot` draws, point by point; restarts de-duplicated; labels; the
/// rendered SVG's lines counted; bad lines named by number.
struct RunChartsTests {
  /// K=4 × B=64, 4 steps per epoch, a step event every 2 steps, two epochs.
  static let small = """
    {"event":"run","world_size":4,"batch_size":64,"accumulate":1,"global_batch":256,"steps_per_epoch":4,\
    "total_steps":8,"model":"mlp:16"}
    {"event":"step","epoch":1,"loss":2.5,"lr":0.1,"step":0}
    {"event":"step","epoch":1,"loss":2,"lr":0.2,"step":2}
    {"event":"epoch","epoch":1,"lr":0.2,"samples_per_sec":1000,"step":4,"test_accuracy":0.5,"test_loss":1.75,\
    "train_loss":2.25}
    {"event":"step","epoch":2,"loss":1.5,"lr":0.3,"step":4}
    {"event":"step","epoch":2,"loss":1.25,"lr":0.3,"step":6}
    {"event":"checkpoint","step":8}
    {"event":"epoch","epoch":2,"lr":0.3,"samples_per_sec":1200,"step":8,"test_accuracy":0.75,"test_loss":1.25,\
    "train_loss":1.375}

    """

  /// (x, y) of a series on `axis`.
  static func xy(_ points: [RunMetricsSeries.Point], _ axis: RunChartAxis) -> [[Double]] {
    points.map { [$0.x(axis), $0.value] }
  }

  @Test("each event's numbers land in its series, at the step and at step / steps_per_epoch")
  func parsesTheSeries() throws {
    let run = try RunMetricsSeries(jsonLines: Self.small, path: "small.jsonl")
    #expect(Self.xy(run.stepLoss, .step) == [[0, 2.5], [2, 2], [4, 1.5], [6, 1.25]])
    #expect(Self.xy(run.stepLoss, .epoch) == [[0, 2.5], [0.5, 2], [1, 1.5], [1.5, 1.25]])
    #expect(run.stepLoss.map(\.epoch) == [1, 1, 2, 2])
    #expect(Self.xy(run.learningRate, .step) == [[0, 0.1], [2, 0.2], [4, 0.3], [6, 0.3]])
    #expect(Self.xy(run.epochTrainLoss, .step) == [[4, 2.25], [8, 1.375]])
    #expect(Self.xy(run.testLoss, .step) == [[4, 1.75], [8, 1.25]])
    #expect(Self.xy(run.testLoss, .epoch) == [[1, 1.75], [2, 1.25]])
    #expect(Self.xy(run.testAccuracy, .epoch) == [[1, 0.5], [2, 0.75]])
    #expect(Self.xy(run.samplesPerSecond, .step) == [[4, 1000], [8, 1200]])
    #expect(run.restarts == 0 && run.divergedAtStep == nil)
    #expect(run.configurationLabel == "K=4 × B=64")
  }

  /// Attempt 1 logs steps 0, 100, 200, 300 (loss 1000 - step) and epochs 1-3 (test loss 10 × epoch); it fails,
  /// and attempt 2 resumes from step 200's checkpoint: steps 200, 300, 400 (loss 5000 - step) and epochs 3-4
  /// (test loss 100 × epoch).
  static let restarted = """
    {"event":"run","world_size":2,"batch_size":16,"global_batch":32,"steps_per_epoch":100,"start_step":0}
    {"event":"step","step":0,"epoch":1,"lr":0.1,"loss":1000}
    {"event":"step","step":100,"epoch":2,"lr":0.1,"loss":900}
    {"event":"epoch","epoch":1,"step":100,"test_loss":10,"test_accuracy":0.1}
    {"event":"step","step":200,"epoch":3,"lr":0.1,"loss":800}
    {"event":"epoch","epoch":2,"step":200,"test_loss":20,"test_accuracy":0.2}
    {"event":"step","step":300,"epoch":4,"lr":0.1,"loss":700}
    {"event":"epoch","epoch":3,"step":300,"test_loss":30,"test_accuracy":0.3}
    {"event":"restart","restart":1,"max_restarts":2,"failed_status":1,"resume_step":200}
    {"event":"run","world_size":2,"batch_size":16,"global_batch":32,"steps_per_epoch":100,"start_step":200}
    {"event":"step","step":200,"epoch":3,"lr":0.05,"loss":4800}
    {"event":"step","step":300,"epoch":4,"lr":0.05,"loss":4700}
    {"event":"epoch","epoch":3,"step":300,"test_loss":300,"test_accuracy":0.33}
    {"event":"step","step":400,"epoch":5,"lr":0.05,"loss":4600}
    {"event":"epoch","epoch":4,"step":400,"test_loss":400,"test_accuracy":0.44}
    """

  @Test("a restarted run keeps the attempt that continued: steps 200 and 300 once, from attempt 2")
  func restartKeepsTheSecondAttempt() throws {
    let run = try RunMetricsSeries(jsonLines: Self.restarted, path: "restarted.jsonl")
    #expect(Self.xy(run.stepLoss, .step) == [[0, 1000], [100, 900], [200, 4800], [300, 4700], [400, 4600]])
    #expect(Self.xy(run.learningRate, .step) == [[0, 0.1], [100, 0.1], [200, 0.05], [300, 0.05], [400, 0.05]])
    #expect(Self.xy(run.testLoss, .epoch) == [[1, 10], [2, 20], [3, 300], [4, 400]])
    #expect(Self.xy(run.testAccuracy, .step) == [[100, 0.1], [200, 0.2], [300, 0.33], [400, 0.44]])
    #expect(run.restarts == 1)
    #expect(run.configurations.count == 2)
    #expect(run.configurationLabel == "K=2 × B=16")
    // The chart draws the same: 5 points, 4 segments, the second attempt's loss at step 300 and none of the first's.
    let models = RunMetricsSeries.chartModels([run], x: .step)
    let loss = try #require(models.first { $0.fileName == "train-loss.svg" }?.chart.series.first)
    #expect(loss.points.map(\.x) == [0, 100, 200, 300, 400])
    #expect(loss.points.map(\.y) == [1000, 900, 4800, 4700, 4600])
    #expect(try Self.segmentCounts(RunMetricsSeries.charts([run])[0].svg) == [4])
  }

  @Test("a stop and --resume from an earlier checkpoint: the replayed steps are taken from the resumed run")
  func resumeFromAnEarlierCheckpoint() throws {
    let text = """
      {"event":"run","world_size":1,"batch_size":8,"steps_per_epoch":10}
      {"event":"step","step":5,"loss":5}
      {"event":"step","step":6,"loss":6}
      {"event":"step","step":7,"loss":7}
      {"event":"stopped","step":8,"signal":"SIGTERM"}
      {"event":"run","world_size":1,"batch_size":8,"steps_per_epoch":10}
      {"event":"step","step":6,"loss":60}
      {"event":"step","step":7,"loss":70}
      {"event":"step","step":8,"loss":80}
      """
    let run = try RunMetricsSeries(jsonLines: text, path: "resumed.jsonl")
    #expect(Self.xy(run.stepLoss, .step) == [[5, 5], [6, 60], [7, 70], [8, 80]])
    // No "epoch" in these step events: the epoch comes from steps_per_epoch.
    #expect(run.stepLoss.map(\.epoch) == [1, 1, 1, 1])
    #expect(Self.xy(run.stepLoss, .epoch) == [[0.5, 5], [0.6, 60], [0.7, 70], [0.8, 80]])
    #expect(run.stoppedAtStep == 8)
  }

  static func file(worldSize: Int, steps: Int, name: String) throws -> RunMetricsSeries {
    var lines = [
      "{\"event\":\"run\",\"world_size\":\(worldSize),\"batch_size\":16,\"steps_per_epoch\":\(steps)}"
    ]
    for step in 0..<steps {
      lines.append("{\"event\":\"step\",\"step\":\(step),\"lr\":0.1,\"loss\":\(Double(10 - step))}")
    }
    for epoch in 1...2 {
      lines.append(
        "{\"event\":\"epoch\",\"epoch\":\(epoch),\"step\":\(epoch * steps),\"test_loss\":1,\"test_accuracy\":0.5,"
          + "\"samples_per_sec\":100,\"train_loss\":3}")
    }
    return try RunMetricsSeries(jsonLines: lines.joined(separator: "\n"), path: "runs/\(name)")
  }

  /// The `d` of each data line of `svg` (the `<path` elements, drawn with fill="none").
  static func pathData(_ svg: String) throws -> [String] {
    try svg.components(separatedBy: "<path ").dropFirst().map { element in
      #expect(element.contains("fill=\"none\""))
      let data = try #require(element.components(separatedBy: "d=\"").dropFirst().first)
      return try #require(data.components(separatedBy: "\"").first)
    }
  }

  /// The number of "L" segments of each data line of `svg`.
  static func segmentCounts(_ svg: String) throws -> [Int] {
    try pathData(svg).map { $0.components(separatedBy: "L").count - 1 }
  }

  @Test("two files: two series per chart, labelled K × B, each line with one segment fewer than its points")
  func twoFilesTwoSeries() throws {
    // 5 logged steps and 2 epochs, then 3 steps and 2 epochs.
    let runs = [
      try Self.file(worldSize: 1, steps: 5, name: "a.jsonl"), try Self.file(worldSize: 2, steps: 3, name: "b.jsonl"),
    ]
    #expect(RunMetricsSeries.labels(for: runs) == ["K=1 × B=16", "K=2 × B=16"])
    let charts = RunMetricsSeries.charts(runs)
    #expect(charts.map(\.fileName) == RunMetricsSeries.chartFileNames)
    #expect(RunMetricsSeries.chartFileNames.count == 5)
    let expected: [String: [Int]] = [
      "train-loss.svg": [4, 2], "learning-rate.svg": [4, 2], "test-loss.svg": [1, 1], "test-accuracy.svg": [1, 1],
      "samples-per-second.svg": [1, 1],
    ]
    for (name, svg) in charts {
      #expect(try Self.segmentCounts(svg) == expected[name], "\(name)")
      #expect(svg.contains(">K=1 × B=16</text>") && svg.contains(">K=2 × B=16</text>"), "\(name)")
      #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
    }
    // On an epoch axis, the steps of b (3 per epoch) are at thirds; its epochs at 1 and 2.
    let models = RunMetricsSeries.chartModels(runs, x: .epoch)
    let loss = try #require(models.first { $0.fileName == "train-loss.svg" }?.chart)
    let thirds: [Double] = [0, 1.0 / 3, 2.0 / 3]
    #expect(loss.series[1].points.map(\.x) == thirds)
    #expect(loss.xLabel == "epoch")
    let accuracy = try #require(models.first { $0.fileName == "test-accuracy.svg" }?.chart)
    #expect(accuracy.series.map { $0.points.map(\.x) } == [[1, 2], [1, 2]])
    #expect(accuracy.xTicks == [0, 1, 2])
  }

  @Test("labels: --label overrides in order; a shared default label gets the file name, then the path")
  func labelsAreUnique() throws {
    let a = try Self.file(worldSize: 2, steps: 3, name: "a.jsonl")
    let b = try Self.file(worldSize: 2, steps: 3, name: "b.jsonl")
    #expect(RunMetricsSeries.labels(for: [a, b]) == ["K=2 × B=16 (a.jsonl)", "K=2 × B=16 (b.jsonl)"])
    #expect(RunMetricsSeries.labels(for: [a, b], overrides: ["first"]) == ["first", "K=2 × B=16"])
    #expect(RunMetricsSeries.labels(for: [a, b], overrides: ["x", "y"]) == ["x", "y"])
    var elsewhere = a
    elsewhere.path = "other/a.jsonl"
    #expect(
      RunMetricsSeries.labels(for: [a, elsewhere]) == ["K=2 × B=16 (runs/a.jsonl)", "K=2 × B=16 (other/a.jsonl)"])
    #expect(RunMetricsSeries.labels(for: [a, a]) == ["K=2 × B=16 #1", "K=2 × B=16 #2"])
    let svg = RunMetricsSeries.charts([a, b], labels: ["<fast>", "slow"])[0].svg
    #expect(svg.contains(">&lt;fast&gt;</text>") && svg.contains(">slow</text>"))
  }

  @Test("a non-finite loss leaves a gap: the line breaks into two pieces")
  func nonFiniteLossIsAGap() throws {
    let text = """
      {"event":"run","world_size":1,"batch_size":8,"steps_per_epoch":10}
      {"event":"step","step":0,"loss":3}
      {"event":"step","step":1,"loss":2}
      {"event":"step","step":2,"loss":"NaN"}
      {"event":"step","step":3,"loss":1}
      {"event":"step","step":4,"loss":0.5}
      {"event":"diverged","step":5,"loss":"Infinity","lr":1}
      """
    let run = try RunMetricsSeries(jsonLines: text, path: "gap.jsonl")
    #expect(run.stepLoss.count == 5 && run.stepLoss[2].value.isNaN)
    #expect(run.divergedAtStep == 5)
    let svg = RunMetricsSeries.charts([run])[0].svg
    // One path "M x y L x y M x y L x y": two pieces of one segment each.
    let data = try Self.pathData(svg)
    #expect(data.count == 1)
    #expect(data.first.map { $0.components(separatedBy: "L").count - 1 } == 2)
    #expect(data.first.map { $0.components(separatedBy: "M").count - 1 } == 2)
    #expect(svg.contains("diverged at step 5"))
  }

  func expectError(_ text: String, mentions words: [String]) {
    expectError(path: "runs/bad.jsonl", mentions: words) {
      try RunMetricsSeries(jsonLines: text, path: "runs/bad.jsonl")
    }
  }

  func expectError(path: String, mentions words: [String], _ body: () throws -> RunMetricsSeries) {
    do {
      _ = try body()
      Issue.record("no error; expected one mentioning \(words)")
    } catch let error as FileError {
      let message = "\(error)"
      #expect(error.path == path)
      #expect((error as Error) is any InputError)
      for word in words { #expect(message.contains(word), "\(message) should mention \(word)") }
      #expect(!message.contains("\n"))
    } catch {
      Issue.record("not a FileError: \(error)")
    }
  }

  @Test("a bad line is named by its number (blank lines counted); missing and empty files are input errors")
  func badLinesAreNamed() throws {
    let good = #"{"event":"run","world_size":1,"batch_size":8}"#
    expectError(good + "\n\n" + #"{"event":"step","step":1,"loss"# + "\n", mentions: ["line 3", "is not JSON"])
    expectError(good + "\n[1, 2]\n", mentions: ["line 2", "not an object"])
    expectError(good + "\n" + #"{"step":1}"#, mentions: ["line 2", "\"event\""])
    expectError(good + "\n" + #"{"event":"step","step":1,"loss":"low"}"#, mentions: ["line 2", "\"loss\"", "number"])
    expectError(good + "\n" + #"{"event":"step","step":1.5,"loss":1}"#, mentions: ["line 2", "\"step\"", "whole"])
    expectError(good + "\n" + #"{"event":"epoch","step":4}"#, mentions: ["line 2", "\"epoch\""])
    expectError("\n\n", mentions: ["empty"])
    let missing = "/nonexistent/metrics.jsonl"
    expectError(path: missing, mentions: [missing, "no such file"]) { try RunMetricsSeries(path: missing) }
    let folder = FileManager.default.temporaryDirectory.path
    expectError(path: folder, mentions: ["is a folder"]) { try RunMetricsSeries(path: folder) }
  }
}
