import Diagnostics
import Foundation

/// What a chart's x axis counts: optimizer steps (from 0) or epochs (epochs completed, fractional for a step).
public enum RunChartAxis: String, CaseIterable, Sendable {
  case step
  case epoch
}

/// One JSON Lines metrics file (docs/INTERFACE.md, "Metrics") read back as the series `plot` draws: the loss of
/// each logged step, the epoch means, test loss and accuracy, the learning rate and the throughput.
///
/// A file that went through restarts (`launch --max-restarts`) or a stop and `--resume` can hold some steps twice:
/// the attempt that continued is kept. Whenever a point's step is at or before the last kept step of its series,
/// the kept points at that step and after it are dropped first, so each series is strictly increasing in step.
public struct RunMetricsSeries: Sendable, Equatable {
  /// One value at one point of the run.
  public struct Point: Sendable, Equatable {
    /// For a `step` event the optimizer step (from 0); for an `epoch` event the steps done when it ended.
    public var step: Int
    /// The epoch as logged (from 1): the one the step belongs to, or the one that ended.
    public var epoch: Int
    /// Where the point lies on an epoch axis: step / steps_per_epoch (the `run` event's), so the first step is 0
    /// and the end of epoch e is e.
    public var epochs: Double
    public var value: Double

    public init(step: Int, epoch: Int, epochs: Double, value: Double) {
      self.step = step
      self.epoch = epoch
      self.epochs = epochs
      self.value = value
    }

    /// The point's position on `axis`.
    public func x(_ axis: RunChartAxis) -> Double { axis == .step ? Double(step) : epochs }
  }

  /// The training configuration of a `run` event (each attempt of a run writes one).
  public struct Configuration: Sendable, Equatable {
    public var worldSize: Int?
    public var batchSize: Int?
    public var accumulate: Int?
    public var globalBatch: Int?
    public var stepsPerEpoch: Int?
    public var model: String?
    public var dataset: String?

    public init(
      worldSize: Int? = nil, batchSize: Int? = nil, accumulate: Int? = nil, globalBatch: Int? = nil,
      stepsPerEpoch: Int? = nil, model: String? = nil, dataset: String? = nil
    ) {
      self.worldSize = worldSize
      self.batchSize = batchSize
      self.accumulate = accumulate
      self.globalBatch = globalBatch
      self.stepsPerEpoch = stepsPerEpoch
      self.model = model
      self.dataset = dataset
    }

    /// "K=4 × B=64" (workers × per-worker batch), "K=4 × B=64 × M=2" with gradient accumulation; nil when the
    /// event names neither.
    public var label: String? {
      guard worldSize != nil || batchSize != nil else { return nil }
      var parts: [String] = []
      if let worldSize { parts.append("K=\(worldSize)") }
      if let batchSize { parts.append("B=\(batchSize)") }
      if let accumulate, accumulate > 1 { parts.append("M=\(accumulate)") }
      return parts.joined(separator: " × ")
    }
  }

  /// The file, as given.
  public var path: String
  /// The `run` events in order (one per attempt: a restart or a resume writes another).
  public var configurations: [Configuration] = []
  /// The loss of each logged step (`step` events).
  public var stepLoss: [Point] = []
  /// The mean training loss of each epoch (`epoch` events' train_loss).
  public var epochTrainLoss: [Point] = []
  public var testLoss: [Point] = []
  public var testAccuracy: [Point] = []
  /// The learning rate each logged step used (`step` events).
  public var learningRate: [Point] = []
  /// Training samples per second over each epoch (`epoch` events).
  public var samplesPerSecond: [Point] = []
  /// How many `restart` events the file holds.
  public var restarts = 0
  /// The step of a `diverged` event, if the run diverged.
  public var divergedAtStep: Int?
  /// The step of the last `stopped` event, if the run was stopped on request.
  public var stoppedAtStep: Int?

  /// Reads the metrics file at `path`. Throws a `FileError` (exit status 2) for a file that is missing, a folder,
  /// unreadable, empty, or has a line that is not a JSON object with an "event" (the message names the line).
  public init(path: String) throws {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw FileError(
        path: path, problem: "no such file; expected a metrics file (JSON Lines) written by `train --metrics`",
        hint: "Check the path.")
    }
    guard !isDirectory.boolValue else {
      throw FileError(
        path: path, problem: "is a folder; expected a metrics file (JSON Lines) written by `train --metrics`",
        hint: "Name the file that `train --metrics FILE` wrote.")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw FileError(path: path, problem: "cannot be read", hint: "Check its permissions.")
    }
    try self.init(jsonLines: String(decoding: data, as: UTF8.self), path: path)
  }

  /// Parses the text of a metrics file; `path` names it in errors.
  public init(jsonLines text: String, path: String) throws {
    self.path = path
    var events: [Event] = []
    let decoder = JSONDecoder()
    for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
      if line.isEmpty { continue }
      let number = index + 1
      let data = Data(line.utf8)
      guard let fields = try? decoder.decode([String: RunMetrics.Field].self, from: data) else {
        let isJSON = (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil
        throw Self.lineError(
          path: path, line: number, (isJSON ? "is JSON but not an object" : "is not JSON") + ": " + Self.excerpt(line))
      }
      guard case .string(let name) = fields["event"] else {
        throw Self.lineError(path: path, line: number, "has no \"event\" name: " + Self.excerpt(line))
      }
      events.append(Event(name: name, fields: fields, line: number, path: path))
    }
    guard !events.isEmpty else {
      throw FileError(
        path: path, problem: "is empty; expected a metrics file (JSON Lines) written by `train --metrics`",
        hint: "Plot it once the training has written its first events.")
    }
    try build(from: events)
  }

  /// The label of the file's first `run` event ("K=4 × B=64"), followed by any other configuration a later
  /// attempt ran with ("K=2 × B=32 → K=4 × B=16"); nil without a `run` event.
  public var configurationLabel: String? {
    var labels: [String] = []
    for label in configurations.compactMap(\.label) where labels.last != label { labels.append(label) }
    return labels.isEmpty ? nil : labels.joined(separator: " → ")
  }

  /// The file's name without its folder.
  public var fileName: String { (path as NSString).lastPathComponent }

  /// One legend label per run: `overrides` first, in order; then each run's configuration label (its file name
  /// without a `run` event). A label that two runs share gets the file name added ("K=1 × B=16 (a.jsonl)"), or the
  /// path, or finally its position.
  public static func labels(for runs: [RunMetricsSeries], overrides: [String] = []) -> [String] {
    let base = runs.enumerated().map { index, run in
      index < overrides.count ? overrides[index] : run.configurationLabel ?? run.fileName
    }
    let candidates: [(Int) -> String] = [
      { "\(base[$0]) (\(runs[$0].fileName))" }, { "\(base[$0]) (\(runs[$0].path))" }, { "\(base[$0]) #\($0 + 1)" },
    ]
    var labels = base
    for makeUnique in candidates {
      let counts = Dictionary(labels.map { ($0, 1) }, uniquingKeysWith: +)
      let clashing = labels.indices.filter { $0 >= overrides.count && counts[labels[$0]]! > 1 }
      if clashing.isEmpty { break }
      for index in clashing { labels[index] = makeUnique(index) }
    }
    return labels
  }

  /// The file names of `charts`, in order.
  public static let chartFileNames = [
    "train-loss.svg", "test-loss.svg", "test-accuracy.svg", "learning-rate.svg", "samples-per-second.svg",
  ]

  /// The five charts, one series per run (named by `labels`, by default `labels(for:)`), x = step or epoch:
  /// training loss (each logged step; a run without step events draws its epoch means), test loss, test accuracy,
  /// learning rate (each logged step) and training samples/s (each epoch).
  public static func chartModels(
    _ runs: [RunMetricsSeries], labels: [String]? = nil, x axis: RunChartAxis = .step
  ) -> [(fileName: String, chart: SVGLineChart)] {
    let names = labels ?? Self.labels(for: runs)
    let xLabel = axis == .step ? "optimizer step" : "epoch"
    func chart(_ title: String, _ yLabel: String, _ values: (RunMetricsSeries) -> [Point]) -> SVGLineChart {
      var chart = SVGLineChart(title: title, xLabel: xLabel, yLabel: yLabel)
      let series = runs.map(values)
      // A dot per point where they are few enough to tell apart (epochs); plain lines for step-by-step series.
      let marker: SVGLineChart.Marker = series.map(\.count).max() ?? 0 <= 30 ? .circle : .none
      for (index, (run, points)) in zip(runs, series).enumerated() {
        chart.series.append(
          .init(
            name: index < names.count ? names[index] : run.fileName,
            points: points.map { .init(x: $0.x(axis), y: $0.value.isFinite ? $0.value : nil, marker: marker) }))
      }
      let notes = runs.enumerated().compactMap { index, run in
        run.remark.map { "\(index < names.count ? names[index] : run.fileName): \($0)" }
      }
      if !notes.isEmpty { chart.note = notes.joined(separator: "; ") }
      // Every run from its start: the x axis from 0, ticks on whole steps or epochs.
      let last = runs.flatMap { $0.allPoints.map { $0.x(axis) } }.filter(\.isFinite).max() ?? 1
      chart.xTicks = Self.ticksFromZero(to: last)
      return chart
    }
    func fromZero(_ chart: SVGLineChart) -> SVGLineChart {
      var chart = chart
      let peak = chart.series.flatMap { $0.points.compactMap(\.y) }.filter(\.isFinite).max() ?? 1
      chart.yRange = 0...max(peak * 1.05, 1e-9)
      return chart
    }
    return [
      (
        "train-loss.svg",
        chart("Training loss", "training loss (each logged step)") {
          $0.stepLoss.isEmpty ? $0.epochTrainLoss : $0.stepLoss
        }
      ),
      ("test-loss.svg", chart("Test loss", "test loss (end of each epoch)") { $0.testLoss }),
      ("test-accuracy.svg", chart("Test accuracy", "test accuracy (end of each epoch)") { $0.testAccuracy }),
      ("learning-rate.svg", fromZero(chart("Learning rate", "learning rate") { $0.learningRate })),
      (
        "samples-per-second.svg",
        fromZero(chart("Training throughput", "training samples / s (each epoch)") { $0.samplesPerSecond })
      ),
    ]
  }

  /// `chartModels` rendered: each chart's file name and its whole SVG document.
  public static func charts(
    _ runs: [RunMetricsSeries], labels: [String]? = nil, x axis: RunChartAxis = .step
  ) -> [(fileName: String, svg: String)] {
    chartModels(runs, labels: labels, x: axis).map { ($0.fileName, $0.chart.render()) }
  }

  /// About five round whole-numbered ticks from 0 to at least `high` (1, 2 or 5 times a power of ten apart).
  static func ticksFromZero(to high: Double) -> [Double] {
    guard high > 0, high.isFinite else { return [0, 1] }
    let raw = high / 5
    let magnitude = pow(10, log10(raw).rounded(.down))
    let fraction = raw / magnitude
    let step = max(1, ((fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10) * magnitude).rounded())
    return (0...Int((high / step).rounded(.up))).map { Double($0) * step }
  }

  /// What a chart's note says about this run: its restarts, a stop, a divergence.
  var remark: String? {
    var parts: [String] = []
    if restarts > 0 { parts.append("\(restarts) restart\(restarts == 1 ? "" : "s")") }
    if let divergedAtStep { parts.append("diverged at step \(divergedAtStep)") }
    if let stoppedAtStep, divergedAtStep == nil, stepLoss.last.map({ $0.step < stoppedAtStep }) ?? true {
      parts.append("stopped after step \(stoppedAtStep)")
    }
    return parts.isEmpty ? nil : parts.joined(separator: ", ")
  }

  var allPoints: [Point] {
    stepLoss + epochTrainLoss + testLoss + testAccuracy + learningRate + samplesPerSecond
  }
}

// MARK: - Reading the events

extension RunMetricsSeries {
  /// One line's object.
  struct Event {
    var name: String
    var fields: [String: RunMetrics.Field]
    var line: Int
    var path: String

    /// The number at `key` ("NaN"/"Infinity"/"-Infinity" strings included); nil when absent, an error when it
    /// is something else.
    func number(_ key: String, required: Bool = false) throws -> Double? {
      switch fields[key] {
      case nil:
        guard !required else {
          throw RunMetricsSeries.lineError(path: path, line: line, "is a \(name) event without \"\(key)\"")
        }
        return nil
      case .number(let value): return value
      case .string("NaN"): return .nan
      case .string("Infinity"): return .infinity
      case .string("-Infinity"): return -.infinity
      default:
        throw RunMetricsSeries.lineError(
          path: path, line: line, "has a \(name) event whose \"\(key)\" is not a number")
      }
    }

    func integer(_ key: String, required: Bool = false) throws -> Int? {
      guard let value = try number(key, required: required) else { return nil }
      guard value.isFinite, let integer = Int(exactly: value) else {
        throw RunMetricsSeries.lineError(
          path: path, line: line, "has a \(name) event whose \"\(key)\" is not a whole number")
      }
      return integer
    }

    func string(_ key: String) -> String? {
      if case .string(let value) = fields[key] { return value }
      return nil
    }
  }

  static func lineError(path: String, line: Int, _ problem: String) -> FileError {
    FileError(
      path: path, problem: "line \(line) \(problem)",
      hint: "Each line of a metrics file is one JSON object with an \"event\", as `train --metrics` writes them.")
  }

  /// The start of a bad line, enough to recognise it.
  static func excerpt(_ line: String) -> String {
    let limit = 40
    let text = line.count > limit ? String(line.prefix(limit)) + "…" : line
    return "'\(text)'"
  }

  mutating func build(from events: [Event]) throws {
    // The steps of an epoch come from the run event in force; before any, from the file's first one.
    var stepsPerEpoch = try events.first { $0.name == "run" }?.integer("steps_per_epoch")
    for event in events {
      switch event.name {
      case "run":
        let configuration = Configuration(
          worldSize: try event.integer("world_size"), batchSize: try event.integer("batch_size"),
          accumulate: try event.integer("accumulate"), globalBatch: try event.integer("global_batch"),
          stepsPerEpoch: try event.integer("steps_per_epoch"), model: event.string("model"),
          dataset: event.string("dataset"))
        configurations.append(configuration)
        if let steps = configuration.stepsPerEpoch, steps > 0 { stepsPerEpoch = steps }
      case "step":
        let step = try event.integer("step", required: true)!
        let epoch = try event.integer("epoch") ?? stepsPerEpoch.map { step / max($0, 1) + 1 } ?? 1
        let epochs = stepsPerEpoch.map { Double(step) / Double(max($0, 1)) } ?? Double(epoch - 1)
        func point(_ value: Double) -> Point { Point(step: step, epoch: epoch, epochs: epochs, value: value) }
        if let loss = try event.number("loss") { Self.keep(point(loss), in: &stepLoss) }
        if let lr = try event.number("lr") { Self.keep(point(lr), in: &learningRate) }
      case "epoch":
        let epoch = try event.integer("epoch", required: true)!
        let step = try event.integer("step") ?? stepsPerEpoch.map { $0 * epoch } ?? epoch
        let epochs = stepsPerEpoch.map { Double(step) / Double(max($0, 1)) } ?? Double(epoch)
        func point(_ value: Double) -> Point { Point(step: step, epoch: epoch, epochs: epochs, value: value) }
        if let value = try event.number("train_loss") { Self.keep(point(value), in: &epochTrainLoss) }
        if let value = try event.number("test_loss") { Self.keep(point(value), in: &testLoss) }
        if let value = try event.number("test_accuracy") { Self.keep(point(value), in: &testAccuracy) }
        if let value = try event.number("samples_per_sec") { Self.keep(point(value), in: &samplesPerSecond) }
      case "restart":
        restarts += 1
      case "diverged":
        divergedAtStep = try event.integer("step")
      case "stopped":
        stoppedAtStep = try event.integer("step")
      default:
        break  // `checkpoint` and events of later versions: nothing to draw.
      }
    }
  }

  /// Appends `point`, first dropping the kept points it replays: those at its step or later (a restarted or
  /// resumed attempt logging again what an earlier one already had).
  static func keep(_ point: Point, in series: inout [Point]) {
    while let last = series.last, last.step >= point.step { series.removeLast() }
    series.append(point)
  }
}
