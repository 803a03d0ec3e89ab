import Foundation
import Inspection
import Optimizers

extension StudyReport {
  /// The charts, by file name: throughput and efficiency vs K; test accuracy vs epoch per policy; final accuracy
  /// vs global batch per policy (the shape of Goyal et al.'s Figure 1); lr vs step for the policies.
  public func makeCharts() -> [(file: String, chart: SVGLineChart)] {
    var charts: [(String, SVGLineChart)] = []
    let workerTicks = speed.map { Double($0.workers) }
    let sizeNote = "per-worker batch \(settings.speedBatch); \(describeCores)"

    var throughput = SVGLineChart(
      title: "Throughput vs workers", xLabel: "workers K", yLabel: "training samples / s")
    throughput.xScale = .log2
    throughput.xTicks = workerTicks
    throughput.note = sizeNote
    throughput.series.append(
      .init(
        name: "measured", points: speed.map { .init(x: Double($0.workers), y: $0.samplesPerSecond) }
      ))
    if let one = speed.first(where: { $0.workers == 1 })?.samplesPerSecond {
      throughput.series.append(
        .init(
          name: "ideal (K × K=1)",
          points: speed.map {
            .init(x: Double($0.workers), y: one * Double($0.workers), marker: .none)
          },
          dashed: true))
    }
    let allThroughput = throughput.series.flatMap { $0.points.compactMap(\.y) }
    throughput.yRange = 0...max(1, (allThroughput.max() ?? 1) * 1.05)
    charts.append(("speed-throughput.svg", throughput))

    var efficiency = SVGLineChart(
      title: "Scaling efficiency vs workers", xLabel: "workers K",
      yLabel: "efficiency = speed-up / K (%)")
    efficiency.xScale = .log2
    efficiency.xTicks = workerTicks
    efficiency.note = sizeNote
    efficiency.series.append(
      .init(
        name: "efficiency",
        points: speed.map { .init(x: Double($0.workers), y: $0.efficiency.map { $0 * 100 }) }))
    efficiency.referenceLines.append(.init(y: 100, label: "linear scaling"))
    efficiency.yRange = 0...max(110, (speed.compactMap(\.efficiency).max() ?? 1) * 105)
    charts.append(("speed-efficiency.svg", efficiency))

    let chance = 1 / Double(Self.classCount)
    for result in accuracy.policies {
      var chart = SVGLineChart(
        title: "Test accuracy per epoch: \(result.label)", xLabel: "epoch", yLabel: "test accuracy")
      chart.xTicks = (1...max(1, settings.epochs)).map(Double.init)
      chart.note = "one line per global batch; × = diverged (drawn at chance)"
      for cell in result.cells {
        var points = cell.epochs.map { SVGLineChart.Point(x: Double($0.epoch), y: $0.testAccuracy) }
        if cell.status == .diverged {
          let epoch =
            cell.epochs.last.map { $0.epoch + (cell.divergence?.kind == "chance" ? 0 : 1) } ?? 1
          points.append(.init(x: Double(min(epoch, settings.epochs)), y: chance, marker: .cross))
        }
        chart.series.append(.init(name: "batch \(cell.globalBatch)", points: points))
      }
      chart.yRange = Self.accuracyRange(
        result.cells.flatMap { $0.epochs.map(\.testAccuracy) } + [chance])
      charts.append(("accuracy-epochs-\(result.policy.rawValue).svg", chart))
    }

    var versusBatch = SVGLineChart(
      title: "Final test accuracy vs global batch (\(settings.epochs) epochs each)",
      xLabel: "global batch K·B·M",
      yLabel: "test accuracy")
    versusBatch.xScale = .log2
    versusBatch.xTicks = settings.globalBatches.sorted().map(Double.init)
    versusBatch.note = "× = diverged (NaN/Inf, or loss at chance), drawn at chance"
    for (index, result) in accuracy.policies.enumerated() {
      // Crosses of different policies at the same batch side by side rather than on top of each other.
      let offset = pow(2, (Double(index) - Double(accuracy.policies.count - 1) / 2) * 0.07)
      versusBatch.series.append(
        .init(
          name: result.label,
          points: result.cells.map { cell in
            if cell.status == .diverged {
              return .init(x: Double(cell.globalBatch) * offset, y: chance, marker: .cross)
            }
            return .init(x: Double(cell.globalBatch), y: cell.finalTestAccuracy)
          }))
    }
    if let baseline = accuracy.baseline {
      versusBatch.referenceLines.append(
        .init(
          y: baseline.testAccuracy - accuracy.tolerance,
          label: String(
            format: "baseline %.3f − %.0f point", baseline.testAccuracy, accuracy.tolerance * 100)))
    }
    versusBatch.yRange = Self.accuracyRange(
      accuracy.policies.flatMap { $0.cells.compactMap(\.finalTestAccuracy) } + [chance])
    charts.append(("accuracy-vs-batch.svg", versusBatch))

    if let batch = lrChartBatch {
      var lr = SVGLineChart(
        title: "Learning rate vs step at global batch \(batch)", xLabel: "optimizer step",
        yLabel: "learning rate")
      lr.note = "the schedule each run used (LARS: its global lr, before the per-layer trust ratio)"
      for result in accuracy.policies {
        guard let cell = result.cells.first(where: { $0.globalBatch == batch }),
          let policy = learningRatePolicy(cell)
        else { continue }
        let total = policy.totalSteps
        let stride = max(1, total / 400)
        let steps = Array(Swift.stride(from: 0, to: total, by: stride)) + [max(0, total - 1)]
        lr.series.append(
          .init(
            name: result.label,
            points: steps.map {
              .init(x: Double($0), y: policy.learningRate(atStep: $0), marker: .none)
            },
            dashed: result.policy == .lars))
      }
      let peak = lr.series.flatMap { $0.points.compactMap(\.y) }.max() ?? 1
      lr.yRange = 0...max(peak * 1.05, 1e-6)
      charts.append(("lr-vs-step.svg", lr))
    }
    return charts
  }

  /// The batch whose lr schedules are drawn: the largest studied, where the policies differ most.
  var lrChartBatch: Int? { settings.globalBatches.max() }

  /// The schedule a cell's run followed (a pure function of the step; the same code the trainer runs).
  func learningRatePolicy(_ cell: AccuracyCell) -> LearningRatePolicy? {
    guard let stepsPerEpoch = cell.stepsPerEpoch, let totalSteps = cell.totalSteps,
      let run = runs.first(where: { $0.id == cell.runId })
    else { return nil }
    func value(_ option: String) -> String? {
      guard let index = run.command.firstIndex(of: option), index + 1 < run.command.count else {
        return nil
      }
      return run.command[index + 1]
    }
    guard let scaling = value("--lr-scaling").flatMap(LRScaling.init(rawValue:)),
      let warmup = value("--warmup-epochs").flatMap(Double.init),
      let decay = value("--schedule").flatMap({ try? LRDecay(parsing: $0) }),
      let baseLearningRate = value("--lr").flatMap(Double.init)
    else { return nil }
    return LearningRatePolicy(
      baseLearningRate: baseLearningRate, baseBatch: settings.training.baseBatch,
      globalBatch: cell.globalBatch,
      scaling: scaling, warmupEpochs: warmup, decay: decay, stepsPerEpoch: stepsPerEpoch,
      totalSteps: totalSteps)
  }

  var describeCores: String { describeCores(namingTheCPU: false) }

  /// "2 cores (AMD EPYC, family 25 model 17; OpenBLAS 0.3.21, Cooperlake kernels); K = 4 oversubscribed".
  func describeCores(namingTheCPU: Bool) -> String {
    let over = machine.oversubscribedWorkers
    var cores = "\(machine.cores) core\(machine.cores == 1 ? "" : "s")"
    if namingTheCPU, let cpu = machine.cpu { cores += " (\(cpu))" }
    if over.isEmpty { return cores }
    return cores + "; K = " + over.map(String.init).joined(separator: ", ") + " oversubscribed"
  }

  /// From just below the lowest value (at most chance) to just above the highest, on 0.05 steps.
  static func accuracyRange(_ values: [Double]) -> ClosedRange<Double> {
    let finite = values.filter(\.isFinite)
    let low = max(0, ((finite.min() ?? 0) - 0.02) * 20).rounded(.down) / 20
    let high = min(1, (((finite.max() ?? 1) + 0.02) * 20).rounded(.up) / 20)
    return low...max(high, low + 0.05)
  }
}
