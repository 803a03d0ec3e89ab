import ArgumentParser
import Datasets
import Foundation
import Optimizers
import ScalingStudy
import Tensors
import Training

/// `ddp-train scaling`: the scaling study. Runs trainings of this same binary through mpirun (never MPI in this
/// process) and writes a report folder: report.md, report.json, SVG charts, and every run's metrics and log.
struct ScalingCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "scaling",
    abstract:
      "Compare K workers on speed, and global batches × lr policies on accuracy; write a report.",
    discussion: """
      Speed: the same training for each K in --workers (batch --speed-batch per worker): samples/s, steps/s, the
      time per step split into data, compute, communication and other; speed-up and efficiency against K=1.
      Accuracy: each global batch in --global-batches (one process accumulating micro-batches of at most
      --micro-batch) under each policy: linear-warmup, linear, none, sqrt, lars, lamb. Divergence is recorded, not
      fatal.
      The K>1 speed runs also measure the gradient noise scale (the estimated critical batch).
      --quick: a small synthetic problem, a few minutes on 2 cores.

      Train options passed on to every training (as for train):
      """ + TrainOption.helpText(accepting: passedOn))

  @Option(
    help:
      "Report folder (created; runs' files in it are replaced) (default runs/scaling, or runs/scaling-quick with --quick)."
  )
  var out: String?
  @Flag(
    help: "A short study on synthetic data (8192 samples): K 1,2; batches 64,256,1024; 4 epochs.")
  var quick = false
  @Flag(help: "Reuse runs whose record in the folder shows the same training finished or diverged.")
  var reuse = false
  @Flag(help: "Print the planned runs and their commands, run nothing.")
  var dryRun = false

  @Option(help: "Speed part: worker counts K (default 1,2,4).")
  var workers: String?
  @Option(parsing: .unconditional, help: "Speed part: batch per worker (default 64).")
  var speedBatch: Int?
  @Option(parsing: .unconditional, help: "Speed part: epochs per run (default --epochs).")
  var speedEpochs: Int?
  @Option(parsing: .unconditional, help: "Speed part: runs per K, interleaved (default 1).")
  var repeats: Int?

  @Option(help: "Accuracy part: global batches (default 64,128,256,512,1024,2048,4096).")
  var globalBatches: String?
  @Option(
    help: "Accuracy part: policies among linear-warmup, linear, none, sqrt, lars, lamb (default all).")
  var policies: String?
  @Option(
    parsing: .unconditional,
    help: "Accuracy part: LAMB's lr at the base batch, scaled by sqrt(G/n) with warmup (default 0.005).")
  var lambLr: Double?
  @Option(
    parsing: .unconditional,
    help: "Accuracy part: workers per run (default 1; the rest by --accumulate).")
  var accuracyWorkers: Int?
  @Option(
    parsing: .unconditional, help: "Accuracy part: largest per-process micro-batch (default 256).")
  var microBatch: Int?
  @Option(parsing: .unconditional, help: "Epochs of every accuracy run (default 10).")
  var epochs: Int?
  @Option(
    parsing: .unconditional,
    help: "A batch within this much test accuracy of the baseline holds it (default 0.01).")
  var tolerance: Double?

  @Option(
    parsing: .unconditional,
    help: "Seconds one training may take before it is ended as failed (default 1800).")
  var runTimeout: Double?
  @Option(help: "The mpirun to use.")
  var mpirun: String = "mpirun"
  @Argument(parsing: .allUnrecognized, help: "Train options passed on to every training (listed above).")
  var trainArguments: [String] = []

  /// Which `train` options the study takes and passes on to every run.
  static func passedOn(_ option: TrainOption) -> Bool { option.inStudy == .passedOn }

  /// Defaults (full or quick) ← options, validated. Input errors only (exit 2).
  func resolveSettings() throws -> StudySettings {
    var settings = quick ? StudySettings.quickDefaults : StudySettings()
    if let workers { settings.workers = try StudySettings.parseList(workers, option: "--workers") }
    if let globalBatches {
      settings.globalBatches = try StudySettings.parseList(
        globalBatches, option: "--global-batches")
    }
    if let policies { settings.policies = try StudySettings.parsePolicies(policies) }
    if let speedBatch { settings.speedBatch = speedBatch }
    if let epochs {
      settings.epochs = epochs
      if speedEpochs == nil && !quick { settings.speedEpochs = epochs }
    }
    if let speedEpochs { settings.speedEpochs = speedEpochs }
    if let repeats { settings.repeats = repeats }
    if let accuracyWorkers { settings.accuracyWorkers = accuracyWorkers }
    if let microBatch { settings.microBatch = microBatch }
    if let tolerance { settings.tolerance = tolerance }
    if let lambLr { settings.lambLearningRate = lambLr }
    try TrainOption.apply(TrainOption.parse(trainArguments, accepting: Self.passedOn), to: &settings.training)
    if let runTimeout { settings.runTimeout = runTimeout }
    try settings.validate()
    return settings
  }

  func run() throws {
    let settings = try resolveSettings()
    let directory = out ?? (quick ? "runs/scaling-quick" : "runs/scaling")
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let launcher = MPIRunLauncher(
      binary: Self.executablePath(), mpirun: mpirun, cores: cores, isRoot: getuid() == 0)
    let plan = StudyPlan(settings: settings)
    let folder = URL(fileURLWithPath: directory).standardizedFileURL.path
    print("ddp-train scaling: \(plan.runs.count) trainings into \(folder)")
    let over = settings.workers.filter { $0 > cores }
    if !over.isEmpty {
      print(
        "  K = \(over.map(String.init).joined(separator: ", ")) exceeds the \(cores) cores: run with --oversubscribe (the report says so)"
      )
    }
    if dryRun {
      for run in plan.runs {
        let metrics = folder + "/metrics/\(run.id).jsonl"
        print(
          "  \(run.id): "
            + launcher.command(for: run, metricsPath: metrics).map(shellQuoted)
            .joined(separator: " "))
      }
      return
    }
    // Ctrl-C: pass it on to the training in progress (mpirun ends its ranks), then stop.
    signal(SIGINT, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGINT)
    source.setEventHandler { ScalingStudy.interrupt() }
    source.resume()
    defer { source.cancel() }

    let study = ScalingStudy(
      plan: plan, launcher: launcher, directory: directory, reuse: reuse, cores: cores,
      command: ["ddp-train"] + CommandLine.arguments.dropFirst())
    // The trainings inherit this process's kernel choice (KernelStartup), so its kernels are theirs.
    study.cpu = [CPUDescription.current?.name, "OpenBLAS \(BLAS.version), \(BLAS.coreName) kernels"]
      .compactMap { $0 }.joined(separator: "; ")
    let report = try study.run()
    print("report: \(folder)/report.md (and report.json, \(report.charts.count) charts)")
    let failed = report.runs.filter { $0.status == .failed }
    if !failed.isEmpty {
      throw StudyFailure(runs: failed.map(\.id), folder: folder)
    }
  }

  /// This executable, as an absolute path mpirun can start on every rank: argv[0] resolved against the working
  /// directory or PATH, else /proc/self/exe.
  static func executablePath() -> String {
    let first = CommandLine.arguments[0]
    if first.contains("/") { return URL(fileURLWithPath: first).standardizedFileURL.path }
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
      let candidate = "\(directory)/\(first)"
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? first
  }
}

/// Some trainings failed (not diverged): the report is written, the status is 1.
struct StudyFailure: Error, CustomStringConvertible {
  var runs: [String]
  var folder: String
  var description: String {
    "\(runs.count) training(s) failed: \(runs.joined(separator: ", ")); see \(folder)/logs/ (the report marks them)"
  }
}
