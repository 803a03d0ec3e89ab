import Foundation
import Inspection

/// Runs a study's trainings one after another and writes the report folder:
///
///   report.md, report.json, *.svg          the report
///   metrics/<run>.jsonl                    each training's --metrics file (what the report is computed from)
///   logs/<run>.log                         each training's command line and output
///   runs/<run>.json                        how each training ended (exit status, seconds), for --reuse
///
/// A training that diverges is a result, not a failure. One that fails is recorded and the study goes on;
/// `run()` reports it in `failedRuns`.
public final class ScalingStudy {
  public let plan: StudyPlan
  public let launcher: any RunLauncher
  public let directory: URL
  /// Keep the result of a run whose record shows the same training finished (0) or diverged (3).
  public let reuse: Bool
  public let cores: Int
  /// The CPU and GEMM kernels, for the report (e.g. "AMD EPYC, family 23 model 1; OpenBLAS 0.3.21, Zen kernels").
  public var cpu: String?
  /// The study's own command line, for the report.
  public let command: [String]
  /// Progress lines (stdout by default).
  public var progress: (String) -> Void = { line in
    print(line)
    fflush(nil)
  }

  public init(
    plan: StudyPlan, launcher: any RunLauncher, directory: String, reuse: Bool, cores: Int,
    command: [String]
  ) {
    self.plan = plan
    self.launcher = launcher
    self.directory = URL(fileURLWithPath: directory).standardizedFileURL
    self.reuse = reuse
    self.cores = cores
    self.command = command
  }

  /// Passes an interrupt (Ctrl-C) on to the training in progress and stops the study after it.
  public static func interrupt() { RunningChild.interrupt() }

  /// What `runs/<id>.json` holds: the training (to recognise it for --reuse) and how it ended.
  struct RecordFile: Codable {
    var training: String
    var outcome: RunOutcome
  }

  /// Runs every planned training, then writes the report. Returns it.
  public func run() throws -> StudyReport {
    for folder in ["metrics", "logs", "runs"] {
      try create(directory.appendingPathComponent(folder))
    }
    var outcomes: [String: RunOutcome] = [:]
    var commands: [String: [String]] = [:]
    let width = String(plan.runs.count).count
    for (index, run) in plan.runs.enumerated() {
      let metricsPath = path("metrics/\(run.id).jsonl")
      let recordPath = path("runs/\(run.id).json")
      let training = "\(run.workers) " + run.trainArguments.joined(separator: " ")
      commands[run.id] = launcher.command(for: run, metricsPath: metricsPath)
      let counter =
        "[" + String(repeating: " ", count: width - String(index + 1).count)
        + "\(index + 1)/\(plan.runs.count)]"
      let what =
        "\(counter) \(run.id): K=\(run.workers) B=\(run.batchSize)"
        + (run.accumulate > 1 ? " M=\(run.accumulate)" : "")
        + " (global batch \(run.globalBatch))"
      if reuse, let data = FileManager.default.contents(atPath: recordPath),
        let record = try? JSONDecoder().decode(RecordFile.self, from: data),
        record.training == training,
        record.outcome.exitStatus == 0 || record.outcome.exitStatus == 3
      {
        outcomes[run.id] = record.outcome
        progress(what + " ... reused " + summary(of: record.outcome, metricsPath: metricsPath))
        continue
      }
      try? FileManager.default.removeItem(atPath: metricsPath)
      let outcome = try launcher.launch(
        run, metricsPath: metricsPath, logPath: path("logs/\(run.id).log"),
        timeout: plan.settings.runTimeout)
      outcomes[run.id] = outcome
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      try write(
        try encoder.encode(RecordFile(training: training, outcome: outcome)), to: recordPath)
      progress(what + " ... " + summary(of: outcome, metricsPath: metricsPath))
    }
    let metrics = Dictionary(
      uniqueKeysWithValues: plan.runs.map {
        ($0.id, RunMetrics(path: path("metrics/\($0.id).jsonl")))
      })
    var report = StudyReport(
      plan: plan, outcomes: outcomes, metrics: metrics, commands: commands, cores: cores, cpu: cpu,
      command: command,
      created: ISO8601DateFormatter().string(from: Date()))
    try write(&report)
    return report
  }

  /// Writes report.json, report.md and the charts into the folder.
  public func write(_ report: inout StudyReport) throws {
    let charts = report.makeCharts()
    report.charts = charts.map(\.file)
    for (file, chart) in charts { try write(Data(chart.render().utf8), to: path(file)) }
    try write(Data(report.markdown().utf8), to: path("report.md"))
    try write(try Self.encode(report), to: path("report.json"))
  }

  /// report.json: snake_case keys, sorted, non-finite numbers as "NaN"/"Infinity" (as in the metrics files).
  public static func encode(_ report: StudyReport) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return try encoder.encode(report)
  }

  public static func decode(_ data: Data) throws -> StudyReport {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(
      positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return try decoder.decode(StudyReport.self, from: data)
  }

  /// "ok, test acc 0.8853 (12.3 s)", "diverged at step 40 (lr 3.2)", "FAILED, exit 1: <last line>".
  func summary(of outcome: RunOutcome, metricsPath: String) -> String {
    let metrics = RunMetrics(path: metricsPath)
    let seconds = String(format: "(%.1f s)", outcome.seconds)
    let accuracy =
      metrics.epochs.last?.number("test_accuracy").map { String(format: "test acc %.4f", $0) }
      ?? "no epoch"
    switch outcome.exitStatus {
    case 0:
      let atChance = StudyReport.classify(outcome: outcome, metrics: metrics).status == .diverged
      return (atChance ? "diverged (at chance), " : "ok, ") + "\(accuracy) \(seconds)"
    case 3:
      let step = metrics.diverged?.integer("step").map(String.init) ?? "?"
      let lr = metrics.diverged?.number("lr").map { StudyReport.number($0) } ?? "?"
      return "diverged at step \(step) (lr \(lr)) \(seconds)"
    default:
      let last = outcome.errorTail?.split(separator: "\n").last.map(String.init) ?? ""
      return
        "FAILED, exit \(outcome.exitStatus)\(outcome.timedOut ? " (timed out)" : ""): \(last) \(seconds)"
    }
  }

  func path(_ relative: String) -> String { directory.appendingPathComponent(relative).path }

  func create(_ url: URL) throws {
    do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
      throw StudyError.io(
        path: url.path, message: "cannot create the folder (\(error.localizedDescription))")
    }
  }

  func write(_ data: Data, to path: String) throws {
    do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
      throw StudyError.io(path: path, message: "cannot write (\(error.localizedDescription))")
    }
  }
}
