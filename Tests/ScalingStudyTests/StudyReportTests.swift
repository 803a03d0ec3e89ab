import Foundation
import Testing

@testable import Inspection
@testable import ScalingStudy

/// The report's arithmetic on hand-written metrics: classification, baseline and tolerance, the time split.
@Suite struct StudyReportTests {
  /// A metrics file of `epochs` epochs with the given final accuracy (earlier epochs a little lower).
  static func metrics(
    globalBatch: Int, epochs: Int, accuracy: Double, trainLoss: Double = 0.4, noise: Double? = nil,
    stepsPerEpoch: Int = 10
  ) -> String {
    var lines = [
      #"{"event":"run","dataset_size":\#(globalBatch * stepsPerEpoch),"steps_per_epoch":\#(stepsPerEpoch),"total_steps":\#(epochs * stepsPerEpoch),"peak_lr":0.1,"warmup_steps":0,"start_step":0}"#
    ]
    for epoch in 1...epochs {
      let value = accuracy - 0.01 * Double(epochs - epoch)
      let noiseField = noise.map { #","noise_scale":\#($0 * Double(epoch))"# } ?? ""
      lines.append(
        #"{"event":"epoch","epoch":\#(epoch),"step":\#(epoch * stepsPerEpoch),"lr":0.1,"train_loss":\#(trainLoss),"test_loss":0.5,"test_accuracy":\#(value),"epoch_s":\#(Double(epoch) * 0 + 2),"time_data_s":0.1,"time_compute_s":1.2,"time_allreduce_s":0.4,"time_other_s":0.2\#(noiseField)}"#
      )
    }
    return lines.joined(separator: "\n") + "\n"
  }

  static func outcome(_ id: String, _ status: Int32) -> RunOutcome {
    RunOutcome(
      id: id, command: ["mpirun"], exitStatus: status, seconds: 1, timedOut: false, errorTail: nil)
  }

  func makeReport() -> StudyReport {
    var settings = StudySettings()
    settings.workers = [1, 2]
    settings.globalBatches = [64, 256, 1024]
    settings.policies = [.linearWarmup, .none]
    settings.epochs = 2
    settings.speedEpochs = 2
    let plan = StudyPlan(settings: settings)
    var outcomes: [String: RunOutcome] = [:]
    var metrics: [String: RunMetrics] = [:]
    for run in plan.runs { outcomes[run.id] = Self.outcome(run.id, 0) }
    metrics["speed-k1-r1"] = RunMetrics(
      jsonLines: Self.metrics(globalBatch: 64, epochs: 2, accuracy: 0.88))
    metrics["speed-k2-r1"] = RunMetrics(
      jsonLines: Self.metrics(globalBatch: 128, epochs: 2, accuracy: 0.87, noise: 100))
    metrics["acc-g256-linear-warmup"] = RunMetrics(
      jsonLines: Self.metrics(globalBatch: 256, epochs: 2, accuracy: 0.875))
    // Diverged: exit 3 with a diverged event after one epoch.
    outcomes["acc-g1024-linear-warmup"] = Self.outcome("acc-g1024-linear-warmup", 3)
    metrics["acc-g1024-linear-warmup"] = RunMetrics(
      jsonLines: Self.metrics(globalBatch: 1024, epochs: 1, accuracy: 0.5)
        + #"{"event":"diverged","step":17,"lr":1.6,"loss":"NaN"}"# + "\n")
    metrics["acc-g256-none"] = RunMetrics(
      jsonLines: Self.metrics(globalBatch: 256, epochs: 2, accuracy: 0.86))
    // At chance: finished, but loss ≈ ln 10 and accuracy 0.1.
    metrics["acc-g1024-none"] = RunMetrics(
      jsonLines: Self.metrics(globalBatch: 1024, epochs: 2, accuracy: 0.10, trainLoss: 2.31))
    return StudyReport(
      plan: plan, outcomes: outcomes, metrics: metrics, commands: [:], cores: 2,
      cpu: "AMD EPYC, family 23 model 1; OpenBLAS 0.3.21, Zen kernels", command: ["ddp-train", "scaling"],
      created: "now")
  }

  @Test func divergenceIsRecordedWithItsStepAndLR() throws {
    let report = makeReport()
    let linear = try #require(report.accuracy.policies.first { $0.policy == .linearWarmup })
    let diverged = try #require(linear.cells.first { $0.globalBatch == 1024 })
    #expect(diverged.status == .diverged)
    #expect(diverged.divergence?.kind == "non-finite")
    #expect(diverged.divergence?.step == 17)
    #expect(diverged.divergence?.lr == 1.6)
    #expect(diverged.divergence?.loss?.isNaN == true)
    #expect(diverged.finalTestAccuracy == nil)
    #expect(StudyReport.cellText(diverged) == "diverged (step 17, lr 1.6)")
    let none = try #require(report.accuracy.policies.first { $0.policy == .none })
    let chance = try #require(none.cells.first { $0.globalBatch == 1024 })
    #expect(chance.status == .diverged)
    #expect(chance.divergence?.kind == "chance")
  }

  @Test func theLargestBatchWithinOnePointIsMarked() throws {
    let report = makeReport()
    #expect(report.accuracy.baseline?.testAccuracy == 0.88)
    #expect(report.accuracy.baseline?.runId == "speed-k1-r1")
    let linear = try #require(report.accuracy.policies.first { $0.policy == .linearWarmup })
    #expect(linear.cells.map(\.withinTolerance) == [true, true, false])  // 0.88, 0.875, diverged
    #expect(linear.largestWithinTolerance == 256)
    #expect(linear.firstBelowTolerance == 1024)
    let none = try #require(report.accuracy.policies.first { $0.policy == .none })
    #expect(none.cells.map(\.withinTolerance) == [true, false, false])  // 0.86 is 2 points below
    #expect(none.largestWithinTolerance == 64)
    #expect(none.firstBelowTolerance == 256)
    #expect(report.noiseScale.largestHoldingBatch == 256)
    #expect(report.noiseScale.breakdownBatch == 1024)
  }

  @Test func speedIsComputedFromTheEpochsAfterTheFirst() throws {
    let report = makeReport()
    let one = try #require(report.speed.first { $0.workers == 1 })
    let two = try #require(report.speed.first { $0.workers == 2 })
    // Epoch 2: 10 steps in 2 s; 64 or 128 samples a step.
    #expect(one.measuredEpochs == [2])
    #expect(abs(one.samplesPerSecond! - 320) < 1e-9)
    #expect(abs(two.samplesPerSecond! - 640) < 1e-9)
    #expect(abs(one.stepsPerSecond! - 5) < 1e-9)
    #expect(abs(one.stepMilliseconds! - 200) < 1e-9)
    #expect(abs(one.dataMilliseconds! - 10) < 1e-9)
    #expect(abs(one.computeMilliseconds! - 120) < 1e-9)
    #expect(abs(one.communicationMilliseconds! - 40) < 1e-9)
    #expect(abs(one.otherMilliseconds! - 30) < 1e-9)  // the rest of the 200 ms
    #expect(abs(two.speedup! - 2) < 1e-9)
    #expect(abs(two.efficiency! - 1) < 1e-9)
    #expect(report.machine.oversubscribedWorkers.isEmpty)
  }

  @Test func theNoiseScaleComesFromTheMultiWorkerRun() throws {
    let report = makeReport()
    let run = try #require(report.noiseScale.measurements.first)
    #expect(run.workers == 2 && run.smallBatch == 64 && run.bigBatch == 128)
    #expect(run.perEpoch == [100, 200])
    #expect(report.noiseScale.estimate == 150)
  }

  @Test func theReportRoundTripsThroughJSONAndRendersEverything() throws {
    var report = makeReport()
    let charts = report.makeCharts()
    report.charts = charts.map(\.file)
    #expect(
      Set(report.charts).isSuperset(of: [
        "speed-throughput.svg", "speed-efficiency.svg", "accuracy-vs-batch.svg", "lr-vs-step.svg",
        "accuracy-epochs-linear-warmup.svg", "accuracy-epochs-none.svg",
      ]))
    let data = try ScalingStudy.encode(report)
    let text = String(decoding: data, as: UTF8.self)
    #expect(text.contains("\"largest_within_tolerance\" : 256"))
    let decoded = try ScalingStudy.decode(data)
    #expect(decoded.accuracy.policies.count == 2)
    #expect(decoded.accuracy.policies[0].cells[2].divergence?.loss?.isNaN == true)
    // Every field survives snake_case and back (a name like "peakLR" would not).
    #expect(decoded.accuracy.policies[0].cells[1].peakLearningRate == 0.1)
    #expect(decoded.accuracy.policies[0].cells[1].stepsPerEpoch == 10)
    #expect(decoded.speed[1].samplesPerSecond == report.speed[1].samplesPerSecond)
    #expect(decoded.noiseScale.estimate == 150)
    let markdown = report.markdown()
    #expect(
      markdown.contains(
        "| 1024 | 1×256×4 | diverged (step 17, lr 1.6) | diverged (at chance, 0.1000) |"))
    #expect(markdown.contains("| 256 | 1×256×1 | 0.8750 ✓ | 0.8600 |"))
    #expect(markdown.contains("B_simple ≈ **150**"))
    #expect(markdown.contains("Machine: 2 cores (AMD EPYC, family 23 model 1; OpenBLAS 0.3.21, Zen kernels)."))
    #expect(decoded.machine.cpu == report.machine.cpu)
  }
}

@Suite struct SVGLineChartTests {
  @Test func aChartHasAxesLabelsLegendAndEscapedText() {
    var chart = SVGLineChart(
      title: "Accuracy <vs> batch", xLabel: "global batch", yLabel: "test accuracy")
    chart.xScale = .log2
    chart.xTicks = [64, 256, 1024]
    chart.series = [
      .init(
        name: "linear & warmup",
        points: [
          .init(x: 64, y: 0.88), .init(x: 256, y: 0.87), .init(x: 1024, y: 0.1, marker: .cross),
        ]),
      .init(
        name: "none",
        points: [.init(x: 64, y: 0.88), .init(x: 256, y: nil), .init(x: 1024, y: 0.8)], dashed: true
      ),
    ]
    chart.referenceLines = [.init(y: 0.87, label: "baseline − 1 point")]
    let svg = chart.render()
    #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
    #expect(svg.hasSuffix("</svg>\n"))
    #expect(svg.contains("Accuracy &lt;vs&gt; batch"))
    #expect(svg.contains("linear &amp; warmup"))
    #expect(svg.contains(">global batch</text>") && svg.contains(">test accuracy</text>"))
    for tick in ["64", "256", "1024"] { #expect(svg.contains(">\(tick)</text>")) }
    #expect(svg.contains("stroke-dasharray=\"6 4\""))
    // The first series' line stops before its cross (drawn as its own path); the second has a gap at 256.
    let paths = svg.components(separatedBy: "<path d=\"").dropFirst().map {
      String($0.prefix { $0 != "\"" })
    }
    #expect(paths.count == 3)
    #expect(paths[0].filter { $0 == "L" }.count == 1)
    #expect(paths[2].filter { $0 == "M" }.count == 2 && !paths[2].contains("L"))
  }

  @Test func niceTicksAreRound() {
    let fractions = SVGLineChart.niceTicks(low: 0.1, high: 0.9)
    #expect(
      fractions.count == 4 && abs(fractions[0] - 0.2) < 1e-12 && abs(fractions[3] - 0.8) < 1e-12)
    let ticks = SVGLineChart.niceTicks(low: 0, high: 1000)
    #expect(ticks == [0, 200, 400, 600, 800, 1000])
  }
}
