import ArgumentParser
import Benchmarks
import Communication
import Datasets
import Dispatch
import Foundation
import HostCounters
import Layers
import MPICommunication
import Tensors
import Training

/// `ddp-train bench [train options] [--windows N] [--warmup W]`: the speed benchmark (BENCHMARKS.md).
///
/// Runs the real training loop (`Trainer`) for W + N epochs, alone or as one rank of `mpirun -np K`, and has rank 0
/// print: samples/s as the median of the N timed epochs after W warm-up epochs (evaluation is outside the epoch
/// clock); the mean time per step split into GEMM, elementwise, loss (`StepProfile`), data, all-reduce exposed
/// (the time `finish` waits) and other (optimizer, checks); the all-reduce of the whole gradient timed alone
/// (its total cost when nothing overlaps it); the training GEMMs' GFLOP/s next to `cblas_sgemm` timed alone on
/// the same shapes; and peak RSS per rank. For K > 1 on one host it also splits rank 0's exposed collective time
/// into waiting for the last rank to arrive and the rest (`CollectiveSkew`), and on Linux it reports how much CPU
/// time the hypervisor stole during the run: the two figures that say whether a slow K > 1 is the program's doing.
struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Measure training speed: samples/s, time split per step, GEMM GFLOP/s, peak RSS.",
    discussion: TrainOptions.discussion)

  @OptionGroup var options: TrainOptions

  @Option(
    parsing: .unconditional, help: "Timed windows (epochs) whose median is reported (default 5).")
  var windows: Int = 5
  @Option(
    parsing: .unconditional,
    help: "Warm-up epochs run before the timed ones, not reported (default 1).")
  var warmup: Int = 1
  @Flag(help: "Also print one JSON object with every figure (for bench/compare).")
  var json = false
  @Flag(
    name: .customLong("no-gemm-reference"),
    help: "Skip timing cblas_sgemm alone on the step's shapes.")
  var skipGEMMReference = false

  func validate() throws {
    guard windows >= 1 else {
      throw ValidationError("--windows must be at least 1, got \(windows)")
    }
    guard warmup >= 0 else { throw ValidationError("--warmup must be at least 0, got \(warmup)") }
  }

  func run() throws {
    var configuration = try options.resolveConfiguration()
    configuration.epochs = warmup + windows
    configuration.maxSteps = nil
    configuration.checkpointDirectory = nil
    configuration.resume = false
    let metricsPath = NSTemporaryDirectory() + "ddp-train-bench-\(getpid()).jsonl"
    configuration.metricsPath = metricsPath
    defer { try? FileManager.default.removeItem(atPath: metricsPath) }
    exitCodeForError = exitStatus(for:)
    let communicator = try makeCommunicator()
    do {
      try measure(
        configuration: configuration, communicator: communicator, metricsPath: metricsPath)
    } catch {
      endJob(after: error, communicator: communicator)
    }
    finishJob(communicator)
  }

  private func measure(
    configuration: TrainingConfiguration, communicator: Communicator, metricsPath: String
  ) throws {
    let data = try collectively(communicator) {
      try DatasetLoader.load(
        configuration.dataset, directory: configuration.dataDirectory,
        synthetic: configuration.synthetic,
        options: configuration.dataOptions)
    }
    let trainer = try collectively(communicator) {
      try Trainer(
        configuration: configuration, communicator: communicator, data: data,
        console: Console(enabled: false))
    }
    let profile = StepProfile()
    if communicator.isCoordinator { StepProfile.current = profile }
    let timestamps = communicator.size > 1 ? CollectiveTimestamps(steps: trainer.plan.totalSteps) : nil
    trainer.reduction.observer = timestamps
    let cpuBefore = CPUTimes.current()
    _ = try trainer.run()
    let steal = CPUTimes.current().flatMap { after in cpuBefore.flatMap { after.stealFraction(since: $0) } }
    StepProfile.current = nil
    let skew = try timestamps.flatMap { try Self.collectiveSkew($0, communicator: communicator) }

    // The gradient all-reduce alone (parameters + the trainer's tail scalars), every rank.
    let plan = trainer.plan
    let gradientCount = trainer.reducedCount
    var allReduceAlone: Double?
    if communicator.size > 1 {
      let buffer = FloatBuffer(count: gradientCount)
      var samples: [Double] = []
      for index in 0..<60 {
        try communicator.barrier()
        let start = DispatchTime.now().uptimeNanoseconds
        try communicator.allReduceSum(buffer.buffer)
        if index >= 10 {
          samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
        }
      }
      allReduceAlone = median(samples)
    }
    var peak = [Int64(peakResidentBytes())]
    let rank0Peak = peak[0]
    try peak.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }

    guard communicator.isCoordinator else {
      try communicator.barrier()
      return
    }
    let lines =
      (try? String(contentsOfFile: metricsPath, encoding: .utf8))?.split(separator: "\n").map(
        String.init) ?? []
    let epochs = EpochRecord.parse(lines: lines)
    // cblas_sgemm alone on each shape, once per shape: the step's own calls and the im2col formulation of its
    // arithmetic (the arithmetic ceiling) share most of them.
    var timedAlone: [String: Double] = [:]
    func secondsAlone(_ site: StepProfile.GEMMSite) -> Double {
      let accumulate = site.name.hasSuffix(".dW")
      let key = "\(site.transposeA) \(site.transposeB) \(site.m) \(site.n) \(site.k) \(accumulate)"
      if let known = timedAlone[key] { return known }
      let seconds = GEMMReference.secondsPerCall(site, accumulate: accumulate)
      timedAlone[key] = seconds
      return seconds
    }
    let reference: [Double] = skipGEMMReference ? [] : profile.sites.map(secondsAlone)
    let formulation = trainer.model.columnFormulationSites(batch: plan.batchSize)
    let formulationFlops = formulation.reduce(0) { $0 + $1.flops * Double($1.calls) } * Double(plan.accumulate)
    let formulationSeconds =
      skipGEMMReference
      ? nil
      : formulation.reduce(0) { $0 + secondsAlone($1) * Double($1.calls) } * Double(plan.accumulate)
    try communicator.barrier()
    let report = BenchReport(
      configuration: configuration, plan: plan, reduction: communicator.size > 1 ? trainer.reductionName : nil,
      crossHostBytes: trainer.reduction.bytesSentAcrossHostsLastStep, pairExchange: trainer.reduction.pairExchangeSteps,
      epochs: epochs,
      warmup: warmup, profile: profile,
      gemmAlone: reference,
      arithmetic: (formulationFlops, formulationSeconds), allReduceAlone: allReduceAlone, skew: skew, hostSteal: steal,
      peakRank0: Int(rank0Peak), peakMax: Int(peak[0]), layerLabels: trainer.model.layers.map(Self.label))
    for line in report.lines { print(line) }
    if json { print(report.json) }
    fflush(nil)
  }

  /// A layer as the per-layer profile names it: its kind, and for a convolution its kernel and method
  /// ("Conv2d 5x5 16→32 winograd").
  static func label(_ layer: Layer) -> String {
    let kind = String(describing: type(of: layer))
    guard let conv = layer as? Conv2d else { return kind }
    return "\(kind) \(conv.kernel)x\(conv.kernel)/\(conv.stride) \(conv.inChannels)→\(conv.outChannels) "
      + (conv.method == .winograd ? "winograd" : "columns")
  }

  /// Rank 0's split of its exposed collective time (`CollectiveSkew`), from every rank's timestamps; nil on the
  /// other ranks, and when the ranks run on more than one host (their monotonic clocks do not compare). Collective.
  static func collectiveSkew(_ timestamps: CollectiveTimestamps, communicator: Communicator) throws
    -> (rank0: CollectiveSkew, perRank: [CollectiveSkew])?
  {
    var name = [UInt8](repeating: 0, count: 256)
    gethostname(&name, name.count - 1)
    let names = try communicator.allGather(name)
    let oneHost = (0..<communicator.size).allSatisfy { names[$0 * 256..<($0 + 1) * 256].elementsEqual(name) }
    var agreed: [Int64] = [oneHost ? 0 : 1]
    try agreed.withUnsafeMutableBufferPointer { try communicator.allReduceMax($0) }
    guard agreed[0] == 0 else { return nil }
    func gather(_ values: [UInt64]) throws -> [[UInt64]] {
      let bytes = try communicator.allGather(values.withUnsafeBytes { Array($0) })
      return bytes.withUnsafeBytes { raw in
        let all = Array(raw.bindMemory(to: UInt64.self))
        return (0..<communicator.size).map { Array(all[$0 * values.count..<($0 + 1) * values.count]) }
      }
    }
    let entries = try gather(timestamps.entries)
    let exits = try gather(timestamps.exits)
    guard communicator.isCoordinator else { return nil }
    // Steps that ran on every rank (all of them, unless the run ended early).
    let ran = entries.map { $0.firstIndex(of: 0) ?? $0.count }.min() ?? 0
    let perRank = (0..<communicator.size).map {
      CollectiveSkew.of(rank: $0, entries: entries, exits: exits, steps: 0..<ran)
    }
    return (perRank[0], perRank)
  }
}

/// Rank 0's figures, formatted.
struct BenchReport {
  let configuration: TrainingConfiguration
  let plan: RunPlan
  /// How gradients were summed (K > 1).
  let reduction: String?
  /// Bytes rank 0 sent to other hosts in a step (the sum in two levels), counted by `PeerExchange`.
  var crossHostBytes: Int? = nil
  /// Two ranks on one host: the steps of each exchange and the last round trip between the cores (rank 0's).
  var pairExchange: (streamed: Int, sharded: Int, roundTripNanoseconds: Double)? = nil
  let epochs: [EpochRecord]
  let warmup: Int
  let profile: StepProfile
  let gemmAlone: [Double]
  /// A rank's step arithmetic in the im2col formulation: FLOPs, and seconds at cblas_sgemm-alone speed (nil with
  /// --no-gemm-reference).
  let arithmetic: (flops: Double, secondsAlone: Double?)
  let allReduceAlone: Double?
  /// Each rank's exposed collective time split into waiting for the last rank and the rest (K > 1, one host).
  let skew: (rank0: CollectiveSkew, perRank: [CollectiveSkew])?
  /// The share of the host's CPU time the hypervisor stole during the run (nil where /proc/stat is absent).
  let hostSteal: Double?
  let peakRank0: Int
  let peakMax: Int
  /// Each layer's name for the per-layer profile (`BenchCommand.label`), in model order.
  let layerLabels: [String]

  var windows: [TimedWindow] {
    epochs.map {
      TimedWindow(samples: Int(($0.samplesPerSecond * $0.seconds).rounded()), seconds: $0.seconds)
    }
  }
  var samplesPerSecond: Double { medianThroughput(windows, warmup: warmup) ?? 0 }
  var steps: Int { epochs.last?.step ?? 0 }
  var overlap: Bool {
    plan.worldSize > 1
      && configuration.overlapCommunication
  }

  /// Mean milliseconds per step over every step run (warm-up included), by phase.
  var split: [(String, Double)] {
    let n = Double(max(steps, 1))
    func ms(_ seconds: Double) -> Double { seconds / n * 1e3 }
    let total = epochs.reduce(0) { $0 + $1.seconds }
    let seconds = profile.seconds
    let compute = epochs.reduce(0) { $0 + $1.computeSeconds }
    let profiled = seconds.reduce(0, +)
    return [
      ("step", ms(total)),
      ("gemm", ms(seconds[StepProfile.Phase.gemm.rawValue])),
      ("elementwise", ms(seconds[StepProfile.Phase.elementwise.rawValue])),
      ("loss", ms(seconds[StepProfile.Phase.loss.rawValue])),
      ("comm_in_backward", ms(seconds[StepProfile.Phase.communication.rawValue])),
      ("compute_unprofiled", ms(max(compute - profiled, 0))),
      ("data", ms(epochs.reduce(0) { $0 + $1.dataSeconds })),
      ("allreduce_exposed", ms(epochs.reduce(0) { $0 + $1.allReduceSeconds })),
      ("other", ms(epochs.reduce(0) { $0 + $1.otherSeconds })),
    ]
  }

  var gemmSeconds: Double { profile.sites.reduce(0) { $0 + $1.seconds } }
  /// Samples/s if a step were its im2col arithmetic at cblas_sgemm-alone speed, every rank (nil without the
  /// reference).
  var arithmeticCeiling: Double? {
    guard let alone = arithmetic.secondsAlone, alone > 0 else { return nil }
    return Double(plan.batchSize * plan.accumulate) / alone * Double(plan.worldSize)
  }
  var gemmAloneSeconds: Double {
    zip(profile.sites, gemmAlone).reduce(0) { $0 + $1.1 * Double($1.0.calls) }
  }

  var lines: [String] {
    var out: [String] = []
    out.append(
      "bench: \(plan.model) on \(configuration.dataset.rawValue), K=\(plan.worldSize) × B=\(plan.batchSize)"
        + " (global \(plan.globalBatch)), \(BLAS.kernelDescription), \(configuration.blasThreads)"
        + " BLAS thread(s) per rank" + (reduction.map { ", gradients: " + $0 } ?? ""))
    if let note = BLAS.narrowKernelsNote { out.append("  note: " + note) }
    let rates = windows.dropFirst(warmup).map(\.samplesPerSecond)
    out.append(
      String(
        format: "  samples/s: %.0f (median of %d epochs after %d warm-up; min %.0f, max %.0f)",
        samplesPerSecond,
        rates.count, warmup, rates.min() ?? 0, rates.max() ?? 0))
    if let crossHostBytes {
      out.append(
        String(
          format: "  across hosts: %.3f MB sent by rank 0 per step (%@)", Double(crossHostBytes) / 1e6,
          configuration.compress == .none ? "fp32" : configuration.compress.rawValue))
    }
    if let pairExchange {
      out.append(
        String(
          format: "  between the two cores: %d steps streamed through memory, %d sharded (last round trip %.0f ns)",
          pairExchange.streamed, pairExchange.sharded, pairExchange.roundTripNanoseconds))
      // Measured on the project's VMs: ~35 ns when the hypervisor put both vCPUs on one physical core (every K=2
      // step then as slow as ~2 K=1 steps), 60-110 ns for two cores sharing a cache (BENCHMARKS.md).
      if pairExchange.roundTripNanoseconds > 0 && pairExchange.roundTripNanoseconds < 50 {
        out.append(
          "  note: a round trip this short suggests the two ranks' CPUs are two hardware threads of one core; "
            + "they then share its arithmetic units, and K=2 cannot run much faster than K=1")
      }
    }
    let split = self.split
    let step = split[0].1
    var parts = split.dropFirst().map { name, value in
      String(format: "%@ %.3f (%.1f%%)", name, value, step > 0 ? 100 * value / step : 0)
    }
    if let allReduceAlone {
      parts.append(String(format: "allreduce_alone %.3f", allReduceAlone * 1e3))
    }
    out.append(
      String(format: "  ms/step (rank 0, mean of %d steps): %.3f = ", steps, step)
        + parts.joined(separator: ", "))
    if let skew {
      let exposed = skew.rank0.waiting + skew.rank0.transfer
      out.append(
        String(
          format:
            "  allreduce exposed on rank 0: %.3f ms/step = waiting for the last rank to arrive %.3f (%.0f%%)"
            + " + after it arrived %.3f",
          exposed * 1e3, skew.rank0.waiting * 1e3, exposed > 0 ? 100 * skew.rank0.waiting / exposed : 0,
          skew.rank0.transfer * 1e3))
      out.append(
        "  per rank (waiting + after arrival, ms/step): "
          + skew.perRank.enumerated().map {
            String(format: "%d: %.3f + %.3f", $0.offset, $0.element.waiting * 1e3, $0.element.transfer * 1e3)
          }.joined(separator: ", "))
    }
    if let hostSteal {
      out.append(
        String(
          format: "  host: %.1f%% of CPU time stolen by the hypervisor during the run (/proc/stat steal)",
          100 * hostSteal))
    }
    if !profile.sites.isEmpty {
      let achieved = gigaflops(profile.gemmFlops, seconds: gemmSeconds)
      var line = String(format: "  GEMM: %.1f GFLOP/s in training", achieved)
      if !gemmAlone.isEmpty {
        line += String(
          format: "; cblas_sgemm alone on the same shapes %.1f GFLOP/s (%.0f%% of it)",
          gigaflops(profile.gemmFlops, seconds: gemmAloneSeconds),
          100 * gemmAloneSeconds / max(gemmSeconds, 1e-12))
      }
      out.append(line)
      if !gemmAlone.isEmpty, steps > 0, gemmAloneSeconds > 0 {
        // What one rank could do if a step were nothing but its GEMMs at cblas_sgemm-alone speed.
        let ceiling =
          Double(plan.batchSize * plan.accumulate) / (gemmAloneSeconds / Double(steps)) * Double(plan.worldSize)
        out.append(
          String(
            format: "  GEMM-only ceiling: %.0f samples/s (K·B·M ÷ the step's GEMM time at cblas_sgemm-alone speed); "
              + "this run reaches %.0f%% of it", ceiling, 100 * samplesPerSecond / ceiling))
      }
      if let alone = arithmetic.secondsAlone, let ceiling = arithmeticCeiling {
        // Convolutions by Winograd do fewer multiplications than this counts, so a step can pass 100% of it.
        out.append(
          String(
            format: "  arithmetic ceiling: %.0f samples/s (%.1f MFLOP per sample of convolution and linear GEMMs as"
              + " im2col counts them, at cblas_sgemm-alone speed on those shapes, %.1f GFLOP/s); this run reaches"
              + " %.0f%% of it", ceiling, arithmetic.flops / Double(plan.batchSize * plan.accumulate) / 1e6,
            arithmetic.flops / alone / 1e9, 100 * samplesPerSecond / ceiling))
      }
      for (index, site) in profile.sites.enumerated() {
        let perCall = site.seconds / Double(max(site.calls, 1))
        var row = String(
          format: "    %-6@ %@%@ m=%-4d n=%-4d k=%-4d %5.1f calls/step %8.1f us %6.1f GFLOP/s",
          site.name,
          site.transposeA ? "T" : "N", site.transposeB ? "T" : "N", site.m, site.n, site.k,
          Double(site.calls) / Double(max(steps, 1)), perCall * 1e6,
          gigaflops(site.flops, seconds: perCall))
        if index < gemmAlone.count {
          row += String(
            format: "  | alone %8.1f us %6.1f GFLOP/s", gemmAlone[index] * 1e6,
            gigaflops(site.flops, seconds: gemmAlone[index]))
        }
        out.append(row)
      }
    }
    out += layerLines
    out.append(
      String(
        format: "  peak RSS: rank 0 %.1f MB, largest rank %.1f MB", Double(peakRank0) / 1e6,
        Double(peakMax) / 1e6))
    return out
  }

  /// Milliseconds per step in each layer's forward and backward (rank 0), and by kind of layer.
  var perLayer: [(label: String, forward: Double, backward: Double)] {
    let n = Double(max(steps, 1))
    return layerLabels.indices.map { index in
      let forward = index < profile.layerForwardSeconds.count ? profile.layerForwardSeconds[index] : 0
      let backward = index < profile.layerBackwardSeconds.count ? profile.layerBackwardSeconds[index] : 0
      return ("\(index) \(layerLabels[index])", forward / n * 1e3, backward / n * 1e3)
    }
  }

  /// Inner layers of residual blocks count as their own kind; `ResidualBlock` is the blocks' own passes.
  var perKind: [(kind: String, milliseconds: Double)] {
    let n = Double(max(steps, 1))
    return profile.kindSeconds.map { ($0.kind, ($0.forward + $0.backward) / n * 1e3) }
  }

  private var layerLines: [String] {
    guard !profile.layerForwardSeconds.isEmpty else { return [] }
    var out = [
      "  per layer kind (ms/step, forward + backward, GEMMs included): "
        + perKind.map { String(format: "%@ %.3f", $0.kind, $0.milliseconds) }.joined(separator: ", ")
    ]
    for entry in perLayer {
      out.append(
        String(
          format: "    %@ forward %7.3f  backward %7.3f",
          entry.label.padding(toLength: max(36, entry.label.count), withPad: " ", startingAt: 0), entry.forward,
          entry.backward))
    }
    return out
  }

  var json: String {
    var object: [String: Any] = [
      "bench": "ddp-train", "world_size": plan.worldSize, "batch_size": plan.batchSize,
      "global_batch": plan.globalBatch, "blas_core": BLAS.coreName,
      "blas_core_forced": BLAS.forcedCoreType ?? "", "blas_kernels": BLAS.kernelDescription,
      "overlap": overlap, "reduction": reduction ?? "none", "cross_host_bytes_per_step": crossHostBytes ?? 0,
      "samples_per_sec": samplesPerSecond,
      "pair_streamed_steps": pairExchange?.streamed ?? 0, "pair_sharded_steps": pairExchange?.sharded ?? 0,
      "pair_round_trip_ns": pairExchange?.roundTripNanoseconds ?? 0,
      "window_samples_per_sec": windows.dropFirst(warmup).map(\.samplesPerSecond), "steps": steps,
      "peak_rss_mb": Double(peakMax) / 1e6,
      "gemm_gflops": gigaflops(profile.gemmFlops, seconds: gemmSeconds),
    ]
    if !gemmAlone.isEmpty {
      object["gemm_alone_gflops"] = gigaflops(profile.gemmFlops, seconds: gemmAloneSeconds)
    }
    if let ceiling = arithmeticCeiling {
      object["arithmetic_ceiling_samples_per_sec"] = ceiling
      object["arithmetic_mflop_per_sample"] = arithmetic.flops / Double(plan.batchSize * plan.accumulate) / 1e6
    }
    if let allReduceAlone { object["allreduce_alone_ms"] = allReduceAlone * 1e3 }
    if let skew {
      object["ms_allreduce_waiting"] = skew.rank0.waiting * 1e3
      object["ms_allreduce_after_arrival"] = skew.rank0.transfer * 1e3
      object["ms_allreduce_waiting_per_rank"] = skew.perRank.map { $0.waiting * 1e3 }
      object["ms_allreduce_after_arrival_per_rank"] = skew.perRank.map { $0.transfer * 1e3 }
    }
    if let hostSteal { object["host_steal_pct"] = 100 * hostSteal }
    if !profile.layerForwardSeconds.isEmpty {
      object["ms_per_layer"] = perLayer.map { ["layer": $0.label, "forward": $0.forward, "backward": $0.backward] }
      object["ms_per_layer_kind"] = Dictionary(uniqueKeysWithValues: perKind.map { ($0.kind, $0.milliseconds) })
    }
    for (name, value) in split { object["ms_" + name] = value }
    let data =
      (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
    return String(decoding: data, as: UTF8.self)
  }
}
