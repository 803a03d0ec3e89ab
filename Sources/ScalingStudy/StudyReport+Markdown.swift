import Foundation
import Training

extension StudyReport {
  /// `report.md`: the tables a person reads in a minute, then the details.
  public func markdown() -> String {
    var out: [String] = []
    let s = settings
    out.append("# Scaling study")
    out.append("")
    out.append("Written by `ddp-train scaling` on \(created).")
    out.append("")
    out.append("```")
    out.append(command.map(shellQuoted).joined(separator: " "))
    out.append("```")
    out.append("")
    let t = s.training
    let data =
      t.dataset == .synthetic
      ? "synthetic (\(t.synthetic.trainCount) train / \(t.synthetic.testCount) test)" : t.dataset.rawValue
    let optimizer =
      "η = \(Self.number(t.learningRate)) at n = \(t.baseBatch), momentum \(Self.number(t.resolvedMomentum)), "
      + "weight decay \(Self.number(t.resolvedWeightDecay)), \(t.schedule) decay after warmup, seed \(t.seed). "
    let warmup =
      "Warmup \(Self.number(t.warmupEpochs)) epochs for linear + warmup, sqrt + warmup, LARS and LAMB; "
      + "LARS trust coefficient \(Self.number(t.trustCoefficient))"
      + (s.policies.contains(.lamb) ? "; LAMB η = \(Self.number(s.lambLearningRate)) at n = \(t.baseBatch)" : "")
      + ". Machine: \(describeCores(namingTheCPU: true))."
    out.append(
      "Model `\(t.model)` on \(data); " + optimizer + warmup
        + (s.quick ? " **Quick mode**: a smoke test of the tool, not a measurement." : ""))
    if !machine.oversubscribedWorkers.isEmpty {
      out.append("")
      out.append(
        "**Oversubscribed:** K = \(machine.oversubscribedWorkers.map(String.init).joined(separator: ", ")) ran more ranks than the "
          + "\(machine.cores) cores (mpirun --oversubscribe), so those ranks time-share cores: their throughput is bounded by "
          + "\(machine.cores) cores' worth and their efficiency cannot exceed \(machine.cores)/K.")
    }

    // Speed.
    out.append("")
    out.append("## Speed: K workers, batch \(s.speedBatch) per worker")
    out.append("")
    out.append(
      "Each K trains \(s.speedEpochs) epoch\(s.speedEpochs == 1 ? "" : "s") (global batch K×\(s.speedBatch), linear + warmup); "
        + "numbers are over epochs \(Self.describeEpochs(speed.first?.measuredEpochs ?? [])) (the first includes start-up when there are several)"
        + (s.repeats > 1 ? ", median of \(s.repeats) interleaved repeats" : "") + ". "
        + "Time per step is rank 0's: data (batch gathering), compute (forward + backward), communication (the gradient "
        + "all-reduce, including waiting for the slowest rank), other (optimizer, checks, the rest of the step). "
        + "Load = the host's 1-minute load average as the runs started: above \(machine.cores), other work was sharing "
        + "the cores, and the timings are slower and noisier than on an idle machine."
    )
    out.append("")
    out.append(
      "| K | global batch | samples/s | steps/s | step (ms) | data | compute | communication | other | speed-up | efficiency | test acc | load |"
    )
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in speed {
      let k = "\(row.workers)" + (row.oversubscribed ? " (oversubscribed)" : "")
      guard row.status == .ok else {
        out.append("| \(k) | \(row.globalBatch) | \(row.status.rawValue) | | | | | | | | | | |")
        continue
      }
      out.append(
        "| \(k) | \(row.globalBatch) | \(Self.fixed(row.samplesPerSecond, 0)) | \(Self.fixed(row.stepsPerSecond, 1)) | "
          + "\(Self.fixed(row.stepMilliseconds, 2)) | \(Self.fixed(row.dataMilliseconds, 2)) | \(Self.fixed(row.computeMilliseconds, 2)) | "
          + "\(Self.fixed(row.communicationMilliseconds, 2)) | \(Self.fixed(row.otherMilliseconds, 2)) | "
          + "\(Self.fixed(row.speedup, 2))× | \(Self.percent(row.efficiency)) | \(Self.fixed(row.finalTestAccuracy, 4)) | "
          + "\(Self.fixed(row.loadAverage, 1)) |"
      )
    }

    // Accuracy.
    out.append("")
    out.append("## Accuracy at equal epochs (\(s.epochs) epochs), test accuracy")
    out.append("")
    if let baseline = accuracy.baseline {
      out.append(
        "Baseline: global batch \(baseline.globalBatch), \(String(format: "%.4f", baseline.testAccuracy)) (run `\(baseline.runId)`). "
          + "✓ = within \(Self.number(accuracy.tolerance * 100)) point of it. Each global batch G runs as K = "
          + "\(s.accuracyWorkers) process\(s.accuracyWorkers == 1 ? "" : "es") accumulating M micro-batches of B ≤ \(s.microBatch) "
          + "(K×B×M); mathematically the same step as G/B workers.")
    } else {
      out.append("No baseline: the run at global batch \(s.baselineBatch) did not finish.")
    }
    out.append("")
    out.append(
      "| global batch | K×B×M | " + accuracy.policies.map(\.label).joined(separator: " | ") + " |")
    out.append("|---:|---|" + String(repeating: "---|", count: accuracy.policies.count))
    for batch in s.globalBatches.sorted() {
      let (k, b, m) = s.decomposition(ofGlobalBatch: batch)
      var row = "| \(batch) | \(k)×\(b)×\(m) |"
      for result in accuracy.policies {
        row +=
          " " + (result.cells.first { $0.globalBatch == batch }.map(Self.cellText) ?? "") + " |"
      }
      out.append(row)
    }
    out.append(
      "| **largest within \(Self.number(accuracy.tolerance * 100)) point** | |"
        + accuracy.policies.map { " **\($0.largestWithinTolerance.map(String.init) ?? "none")** |" }
        .joined())
    out.append(
      "| first batch below | |"
        + accuracy.policies.map { " \($0.firstBelowTolerance.map(String.init) ?? "—") |" }.joined())
    out.append("")
    out.append(
      "Diverged = the loss or a gradient became NaN/Inf (the trainer stops with exit status 3; the step and lr are given), "
        + "or the run finished at chance (train loss ≥ 0.95·ln \(Self.classCount) and test accuracy ≤ "
        + "\(Self.number(1.5 / Double(Self.classCount)))). Peak lr per cell is in the per-epoch tables below and in report.json."
    )

    // Noise scale.
    out.append("")
    out.append("## Gradient noise scale and where accuracy falls")
    out.append("")
    if let estimate = noiseScale.estimate, let source = noiseScale.estimateSource {
      let range =
        noiseScale.measurements.last.map { run -> String in
          let values = run.perEpoch.compactMap { $0 }.filter(\.isFinite)
          guard let first = values.first, let last = values.last else { return "" }
          return String(
            format: "; it went from %.0f after epoch 1 to %.0f after the last epoch", first, last)
        } ?? ""
      out.append(
        String(
          format: "Estimated critical batch B_simple ≈ **%.0f** (%@%@). ", estimate, source, range)
          + "Linear + warmup holds to global batch **\(noiseScale.largestHoldingBatch.map(String.init) ?? "none")** "
          + "and falls from **\(noiseScale.breakdownBatch.map(String.init) ?? "— (never, in the batches studied)")**."
      )
    } else {
      out.append(
        "No noise-scale estimate: it needs a speed run with K > 1 (two batch sizes, B and K·B). "
          + "Linear + warmup holds to \(noiseScale.largestHoldingBatch.map(String.init) ?? "none") and falls from "
          + "\(noiseScale.breakdownBatch.map(String.init) ?? "—").")
    }
    if !noiseScale.measurements.isEmpty {
      let epochs = noiseScale.measurements.map(\.perEpoch.count).max() ?? 0
      out.append("")
      out.append(
        "B_simple = tr(Σ)/|G|² per epoch (McCandlish et al. 2018), from each rank's gradient (b_small) and the all-reduced one (b_big), smoothed:"
      )
      out.append("")
      out.append(
        "| run | b_small | b_big | "
          + (1...max(1, epochs)).map { "epoch \($0)" }.joined(separator: " | ") + " |")
      out.append("|---|---:|---:|" + String(repeating: "---:|", count: max(1, epochs)))
      for run in noiseScale.measurements {
        let values = (0..<max(1, epochs)).map { index -> String in
          guard index < run.perEpoch.count, let value = run.perEpoch[index] else { return "" }
          return String(format: "%.0f", value)
        }
        out.append(
          "| \(run.runId) | \(run.smallBatch) | \(run.bigBatch) | "
            + values.joined(separator: " | ") + " |")
      }
    }

    // Per epoch.
    out.append("")
    out.append("## Test accuracy per epoch")
    for result in accuracy.policies {
      out.append("")
      out.append("### \(result.label)")
      out.append("")
      out.append(
        "| global batch | peak lr | warmup steps | steps/epoch | "
          + (1...s.epochs).map(String.init).joined(separator: " | ") + " |")
      out.append("|---:|---:|---:|---:|" + String(repeating: "---:|", count: s.epochs))
      for cell in result.cells {
        let values = (1...s.epochs).map { epoch in
          cell.epochs.first { $0.epoch == epoch }.map { String(format: "%.4f", $0.testAccuracy) }
            ?? ""
        }
        out.append(
          "| \(cell.globalBatch) | \(cell.peakLearningRate.map(Self.number) ?? "") | \(cell.warmupSteps.map(String.init) ?? "") | "
            + "\(cell.stepsPerEpoch.map(String.init) ?? "") | " + values.joined(separator: " | ")
            + " |")
      }
    }

    // Charts.
    out.append("")
    out.append("## Charts")
    out.append("")
    for file in charts { out.append("![\(file)](\(file))") }

    // Runs.
    out.append("")
    out.append("## Runs")
    out.append("")
    out.append("Metrics in `metrics/<id>.jsonl`, output in `logs/<id>.log`.")
    out.append("")
    out.append("| run | K×B×M | status | exit | seconds | load |")
    out.append("|---|---|---|---:|---:|---:|")
    for run in runs {
      out.append(
        "| \(run.id) | \(run.workers)×\(run.batchSize)×\(run.accumulate) | \(run.status.rawValue)\(run.timedOut ? " (timed out)" : "") | "
          + "\(run.exitStatus.map(String.init) ?? "") | \(Self.fixed(run.seconds, 1)) | \(Self.fixed(run.loadAverage, 1)) |"
      )
    }
    out.append("")
    return out.joined(separator: "\n")
  }

  /// "0.8853 ✓", "diverged (step 12, lr 0.8)", "diverged (at chance, 0.1000)", "failed".
  static func cellText(_ cell: AccuracyCell) -> String {
    switch cell.status {
    case .ok:
      return String(format: "%.4f", cell.finalTestAccuracy ?? .nan)
        + (cell.withinTolerance ? " ✓" : "")
    case .diverged:
      if cell.divergence?.kind == "chance" {
        return "diverged (at chance, \(String(format: "%.4f", cell.finalTestAccuracy ?? .nan)))"
      }
      var detail: [String] = []
      if let step = cell.divergence?.step { detail.append("step \(step)") }
      if let lr = cell.divergence?.lr { detail.append("lr \(number(lr))") }
      return "diverged" + (detail.isEmpty ? "" : " (" + detail.joined(separator: ", ") + ")")
    case .failed: return "failed"
    case .notRun: return "not run"
    }
  }

  static func describeEpochs(_ epochs: [Int]) -> String {
    guard let first = epochs.first, let last = epochs.last else { return "—" }
    return first == last ? "\(first)" : "\(first)–\(last)"
  }

  static func fixed(_ value: Double?, _ decimals: Int) -> String {
    guard let value, value.isFinite else { return "" }
    return String(format: "%.\(decimals)f", value)
  }

  static func percent(_ value: Double?) -> String {
    guard let value, value.isFinite else { return "" }
    return String(format: "%.0f%%", value * 100)
  }

  /// Up to 4 significant digits, no trailing zeros: 0.05, 0.0005, 3.2, 0.4.
  static func number(_ value: Double) -> String {
    guard value.isFinite else { return String(value) }
    var text = String(format: "%.4g", value)
    if text.contains("e") { return text }
    if text.contains(".") {
      while text.hasSuffix("0") { text.removeLast() }
      if text.hasSuffix(".") { text.removeLast() }
    }
    return text
  }
}
