import Foundation
import Inspection
import Optimizers
import TestSupport
import Testing

@testable import ScalingStudy

/// Runs the built binary's `scaling --quick` (real mpirun subprocesses) and checks the report against the
/// metrics files it was computed from. Serialized: it launches MPI jobs and wants the cores.
@Suite(.serialized) struct QuickStudyTests {
  @Test(.timeLimit(.minutes(5))) func quickStudyWritesAReportThatAgreesWithItsMetrics() throws {
    guard DDPTrainProcess.mpirunAvailable else {
      Issue.record("mpirun not found: install openmpi-bin (launch/setup does)")
      return
    }
    let folder = try makeScratchDirectory("scaling-quick")
    defer { try? FileManager.default.removeItem(at: folder) }
    let result = try DDPTrainProcess.run(
      ["scaling", "--quick", "--out", folder.path], timeout: 240, stopSignal: SIGINT, grace: 3)
    try #require(!result.timedOut, "scaling --quick took over 240 s")
    try #require(result.status == 0, "exit \(result.status): \(result.output.suffix(2000))")

    // The files exist.
    let fileManager = FileManager.default
    for file in ["report.md", "report.json"] {
      #expect(
        fileManager.fileExists(atPath: folder.appendingPathComponent(file).path), "\(file) missing")
    }
    let report = try ScalingStudy.decode(
      try Data(contentsOf: folder.appendingPathComponent("report.json")))
    #expect(report.charts.count == 4 + report.settings.policies.count)
    for chart in report.charts {
      let text = try String(contentsOf: folder.appendingPathComponent(chart), encoding: .utf8)
      #expect(
        text.hasPrefix("<svg") && text.hasSuffix("</svg>\n"), "\(chart) is not an SVG document")
    }
    let markdown = try String(
      contentsOf: folder.appendingPathComponent("report.md"), encoding: .utf8)
    #expect(markdown.contains("## Speed"))
    #expect(markdown.contains("## Accuracy at equal epochs"))
    for chart in report.charts { #expect(markdown.contains("](\(chart))")) }

    // Every run ran; its metrics and log are there.
    #expect(report.runs.allSatisfy { $0.status != .notRun && $0.status != .failed })
    for run in report.runs {
      #expect(fileManager.fileExists(atPath: folder.appendingPathComponent(run.metricsFile).path))
      #expect(fileManager.fileExists(atPath: folder.appendingPathComponent(run.logFile).path))
    }

    // Accuracy cells agree with their metrics: steps per epoch = floor(N/(K·B·M)), final accuracy = last epoch's,
    // one epoch event per epoch, and the lr each step event logged is the schedule the report draws.
    let settings = report.settings
    for policy in report.accuracy.policies {
      #expect(policy.cells.map(\.globalBatch) == settings.globalBatches.sorted())
      for cell in policy.cells {
        let metrics = RunMetrics(
          path: folder.appendingPathComponent("metrics/\(cell.runId).jsonl").path)
        let run = try #require(metrics.run)
        let datasetSize = try #require(run.integer("dataset_size"))
        #expect(datasetSize == settings.training.synthetic.trainCount)
        #expect(cell.workers * cell.batchSize * cell.accumulate == cell.globalBatch)
        #expect(cell.stepsPerEpoch == datasetSize / cell.globalBatch)
        #expect(cell.stepsPerEpoch == run.integer("steps_per_epoch"))
        #expect(run.integer("global_batch") == cell.globalBatch)
        #expect(run.integer("world_size") == cell.workers)
        #expect(run.integer("accumulate") == cell.accumulate)
        #expect(cell.epochs.count == metrics.epochs.count)
        if cell.status == .ok {
          #expect(cell.epochs.count == settings.epochs)
          #expect(cell.finalTestAccuracy == metrics.epochs.last?.number("test_accuracy"))
          #expect(cell.epochs.last?.step == settings.epochs * datasetSize / cell.globalBatch)
        }
        let schedule = try #require(report.learningRatePolicy(cell))
        #expect(schedule.peakLR == cell.peakLearningRate)
        for step in metrics.steps {
          let index = try #require(step.integer("step"))
          let logged = try #require(step.number("lr"))
          #expect(
            abs(logged - schedule.learningRate(atStep: index)) <= 1e-12 * max(1, logged),
            "\(cell.runId) step \(index)")
        }
      }
    }
    let baseline = try #require(report.accuracy.baseline)
    for policy in report.accuracy.policies {
      for cell in policy.cells {
        let holds =
          cell.status == .ok
          && cell.finalTestAccuracy! >= baseline.testAccuracy - report.accuracy.tolerance - 1e-12
        #expect(cell.withinTolerance == holds)
      }
      #expect(
        policy.largestWithinTolerance
          == policy.cells.filter(\.withinTolerance).map(\.globalBatch).max())
    }

    // Speed rows agree with their epoch events.
    for row in report.speed {
      let id = try #require(row.runIds.first)
      let metrics = RunMetrics(path: folder.appendingPathComponent("metrics/\(id).jsonl").path)
      #expect(metrics.run?.integer("world_size") == row.workers)
      #expect(metrics.run?.integer("steps_per_epoch") == datasetSizeOf(metrics) / row.globalBatch)
      let measured = metrics.epochs.filter {
        row.measuredEpochs.contains($0.integer("epoch") ?? -1)
      }
      let seconds = measured.compactMap { $0.number("epoch_s") }.reduce(0, +)
      let steps = Double(measured.count * (metrics.run?.integer("steps_per_epoch") ?? 0))
      let samplesPerSecond = try #require(row.samplesPerSecond)
      #expect(
        abs(samplesPerSecond - steps * Double(row.globalBatch) / seconds) <= 1e-6 * samplesPerSecond
      )
      // Each epoch's own samples_per_sec is the same quantity, per epoch.
      for epoch in measured {
        let own = try #require(epoch.number("samples_per_sec"))
        let mine =
          Double(metrics.run!.integer("steps_per_epoch")! * row.globalBatch) / epoch.number(
            "epoch_s")!
        #expect(abs(own - mine) <= 0.02 * own)
      }
      let parts = [
        row.dataMilliseconds, row.computeMilliseconds, row.communicationMilliseconds,
        row.otherMilliseconds,
      ]
      #expect(abs(parts.compactMap { $0 }.reduce(0, +) - row.stepMilliseconds!) < 1e-6)
      #expect(row.oversubscribed == (row.workers > report.machine.cores))
    }
    // K=2 measures the noise scale.
    if settings.workers.contains(where: { $0 > 1 }) {
      #expect(report.noiseScale.measurements.first?.stepMeasurements ?? 0 > 0)
    }
  }

  func datasetSizeOf(_ metrics: RunMetrics) -> Int { metrics.run?.integer("dataset_size") ?? 0 }

  @Test(.timeLimit(.minutes(1))) func badOptionsExitWithStatus2NamingTheOption() throws {
    for (arguments, option) in [
      (["scaling", "--workers", "1,x"], "--workers"),
      (["scaling", "--global-batches", "64,0"], "--global-batches"),
      (["scaling", "--policies", "linear,cubic"], "--policies"),
      (["scaling", "--micro-batch", "64", "--global-batches", "96"], "--global-batches"),
      (["scaling", "--trust-coefficient", "-1"], "--trust-coefficient"),
      (["train", "--optimizer", "adam"], "--optimizer"),
      (["train", "--trust-coefficient", "0", "--dataset", "synthetic"], "--trust-coefficient"),
    ] {
      let folder = try makeScratchDirectory("scaling-bad")
      defer { try? FileManager.default.removeItem(at: folder) }
      let result = try DDPTrainProcess.run(
        arguments + (arguments[0] == "scaling" ? ["--out", folder.path + "/r"] : []), timeout: 30, stopSignal: SIGINT,
        grace: 3)
      #expect(result.status == 2, "\(arguments): exit \(result.status)")
      #expect(result.stderr.contains(option), "\(arguments): \(result.stderr)")
      #expect(
        !FileManager.default.fileExists(atPath: folder.path + "/r"), "wrote into the report folder")
    }
  }

  @Test(.timeLimit(.minutes(2))) func larsTrainsAndItsCheckpointSaysSo() throws {
    let folder = try makeScratchDirectory("lars")
    defer { try? FileManager.default.removeItem(at: folder) }
    let result = try DDPTrainProcess.run(
      [
        "train", "--dataset", "synthetic", "--synthetic-train", "2048", "--optimizer", "lars",
        "--trust-coefficient",
        "0.02", "--max-steps", "60", "--batch-size", "32", "--checkpoint-dir",
        folder.path + "/ckpt",
      ], timeout: 60, stopSignal: SIGINT, grace: 3)
    try #require(result.status == 0, "\(result.output.suffix(2000))")
    let accuracy = result.stdout.split(separator: "\n").last { $0.hasPrefix("done:") }
    #expect(accuracy != nil)
    let checkpoint = try #require(
      try FileManager.default.contentsOfDirectory(atPath: folder.path + "/ckpt").first {
        $0.hasPrefix("step-")
      })
    let bytes = try Data(
      contentsOf: URL(fileURLWithPath: "\(folder.path)/ckpt/\(checkpoint)/optimizer.safetensors"))
    let headerLength = bytes.prefix(8).enumerated().reduce(0) {
      $0 | Int($1.element) << (8 * $1.offset)
    }
    let header = String(decoding: bytes.dropFirst(8).prefix(headerLength), as: UTF8.self)
    #expect(header.contains("LARS momentum_buffer trust_coefficient=0.02"), "\(header.prefix(400))")
  }
}
