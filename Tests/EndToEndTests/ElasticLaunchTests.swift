import Foundation
import TestSupport
import Testing

/// `ddp-train launch --elastic` on namespace hosts: a host's link cut at a random step, the job continuing on the
/// others with the same global batch (one step from the checkpoint it continued from equals the original layout's
/// step; the final accuracy equals an uninterrupted run's within 0.3 points), the host taken back when its link
/// returns, and the `membership` events that say so.
@Suite(
  .serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"),
  .enabled(if: NamespaceCluster.available, "\(NamespaceCluster.unavailableReason)"))
struct ElasticLaunchTests {
  /// The job: the synthetic MLP, cosine to 0 at `steps` (so that the end settles and accuracies compare), a
  /// checkpoint every 1000 steps, a 5 s step timeout.
  static func train(batch: Int, steps: Int, checkpoints: URL, metrics: URL? = nil) -> [String] {
    [
      "--dataset", "synthetic", "--model", "mlp:32", "--batch-size", String(batch), "--max-steps", String(steps),
      "--schedule", "cosine", "--checkpoint-dir", checkpoints.path, "--checkpoint-every", "1000", "--log-every",
      "1000000", "--step-timeout", "5",
    ] + (metrics.map { ["--metrics", $0.path] } ?? [])
  }

  /// A cluster.yaml for `cluster` with `arguments` as its train: section.
  static func config(_ cluster: NamespaceCluster, _ arguments: [String], in scratch: URL) throws -> String {
    var train = ""
    for (index, word) in arguments.enumerated() where word.hasPrefix("--") {
      train += "  \(word.dropFirst(2)): \(arguments[index + 1])\n"
    }
    let path = scratch.appendingPathComponent("cluster.yaml").path
    try (cluster.yaml + "train:\n" + train).write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  static func testAccuracy(in output: String) -> Double? {
    guard let range = output.range(of: "test accuracy ", options: .backwards) else { return nil }
    return Double(output[range.upperBound...].prefix { $0.isNumber || $0 == "." })
  }

  @Test(
    "3 hosts × 1: a link cut at a random step; the job goes on 2 × 48 = 96, takes the host back, ends with status 0")
  func linkCutThenBack() throws {
    let cluster = try NamespaceCluster(hosts: 3, slots: 1)
    defer { cluster.down() }
    let scratch = try makeScratchDirectory("elastic-3")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let checkpoints = scratch.appendingPathComponent("ck")
    let metrics = scratch.appendingPathComponent("metrics.jsonl")
    let steps = 30000
    let config = try Self.config(
      cluster, Self.train(batch: 32, steps: steps, checkpoints: checkpoints, metrics: metrics), in: scratch)
    let cutAt = LockedBox<Date>()
    let relaunchedAt = LockedBox<Date>()
    nonisolated(unsafe) let target = cluster
    let lost = cluster.hosts[2]
    let result = try DDPTrainProcess.run(
      ["launch", "--config", config, "--elastic", "--min-hosts", "2", "--probe-every", "3"], timeout: 240
    ) { _ in
      // A random step after the first checkpoint (a cut before it would restart the job from step 0, which is
      // tested by the 2 × 2 case): up to 2 s after it appears.
      _ = JobWatching.waitForFirstCheckpoint(in: checkpoints, jitter: 2)
      cutAt.set(Date())
      target.link(lost, up: false)
      _ = JobWatching.wait(timeout: 60) { (try? JobWatching.events("membership", in: metrics).count) == 1 }
      relaunchedAt.set(Date())
      // The host comes back a while later; launch asks it every 3 s.
      usleep(3_000_000)
      let upAt = Date()
      target.link(lost, up: true)
      if JobWatching.wait(timeout: 60, until: { (try? JobWatching.events("membership", in: metrics).count) == 2 }) {
        print(
          String(
            format: "ElasticLaunchTests: 3 × 1: taken back %.1f s after the link came up",
            Date().timeIntervalSince(upAt)))
      }
    }
    #expect(result.status == 0 && !result.timedOut, "\(result.output)")
    let memberships = try JobWatching.events("membership", in: metrics)
    #expect(memberships.count == 2, "\(memberships)")
    guard memberships.count == 2, let cut = cutAt.value, let relaunched = relaunchedAt.value else { return }
    #expect(memberships[0]["reason"] as? String == "lost" && memberships[0]["changed"] as? [String] == [lost])
    #expect(memberships[0]["world_size"] as? Int == 2 && memberships[0]["batch_size"] as? Int == 48)
    #expect(memberships[0]["global_batch"] as? Int == 96 && memberships[0]["kept_global_batch"] as? Bool == true)
    #expect(memberships[1]["reason"] as? String == "returned" && memberships[1]["world_size"] as? Int == 3)
    #expect(result.stdout.contains("2 workers × 48 = global batch 96"), "\(result.stdout)")
    #expect(result.stderr.contains("host \(lost) answers again"), "\(result.stderr)")
    // Time lost to the failure: from the cut to the relaunch (watchdog: step timeout 5 s + its 2 s grace; launch's
    // 1.5 s wait; the probes; the pause), plus the steps redone since the checkpoint it continued from.
    let detection = relaunched.timeIntervalSince(cut)
    print(String(format: "ElasticLaunchTests: 3 × 1: relaunched %.1f s after the cut", detection))
    #expect(detection < 5 + 15, "relaunched \(detection) s after the cut")

    // One step from the checkpoint the job continued from: 2 × 48 as relaunched, 3 × 32 as the original job.
    let resumed = memberships[0]["resume_step"] as? Int ?? 0
    #expect(resumed > 0, "\(memberships[0])")
    let start = try SingleStep.parameters(at: resumed, in: checkpoints)
    let relaunchedStep = try SingleStep.take(
      from: checkpoints, at: resumed, into: scratch.appendingPathComponent("two"),
      Self.train(batch: 48, steps: steps, checkpoints: scratch.appendingPathComponent("two"))
    ) { try DDPTrainProcess.mpirun(ranks: 2, $0) }
    let originalStep = try SingleStep.take(
      from: checkpoints, at: resumed, into: scratch.appendingPathComponent("three"),
      Self.train(batch: 32, steps: steps, checkpoints: scratch.appendingPathComponent("three"))
    ) { try DDPTrainProcess.mpirun(ranks: 3, $0) }
    SingleStep.expectSameStep(
      relaunchedStep.parameters, originalStep.parameters, from: start, "elastic 2 × 48 against 3 × 32")

    // The whole run against one never interrupted: the same final accuracy within 0.3 points.
    let uninterrupted = try DDPTrainProcess.mpirun(
      ranks: 3, Self.train(batch: 32, steps: steps, checkpoints: scratch.appendingPathComponent("whole")),
      timeout: 240)
    #expect(uninterrupted.status == 0, "\(uninterrupted.output)")
    let elasticAccuracy = Self.testAccuracy(in: result.stdout)
    let wholeAccuracy = Self.testAccuracy(in: uninterrupted.stdout)
    print("ElasticLaunchTests: test accuracy \(elasticAccuracy ?? -1) elastic, \(wholeAccuracy ?? -1) uninterrupted")
    #expect(elasticAccuracy != nil && wholeAccuracy != nil)
    if let elasticAccuracy, let wholeAccuracy {
      #expect(abs(elasticAccuracy - wholeAccuracy) <= 0.003, "\(elasticAccuracy) against \(wholeAccuracy)")
    }
  }

  @Test("2 hosts × 2: the second host's link cut; the job ends on the first, 2 × 128 = 256, with status 0")
  func linkCutTwoByTwo() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 2)
    defer { cluster.down() }
    let scratch = try makeScratchDirectory("elastic-2x2")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let checkpoints = scratch.appendingPathComponent("ck")
    let metrics = scratch.appendingPathComponent("metrics.jsonl")
    let config = try Self.config(
      cluster, Self.train(batch: 64, steps: 12000, checkpoints: checkpoints, metrics: metrics), in: scratch)
    nonisolated(unsafe) let target = cluster
    let lost = cluster.hosts[1]
    let cutAt = LockedBox<Date>()
    let relaunchedAt = LockedBox<Date>()
    let result = try DDPTrainProcess.run(
      ["launch", "--config", config, "--elastic", "--probe-every", "600"], timeout: 240
    ) { _ in
      _ = JobWatching.wait(timeout: 30) {
        target.processes(on: lost).filter { $0.name == "ddp-train" }.count == target.slots
      }
      usleep(UInt32.random(in: 1_000_000...3_000_000))
      cutAt.set(Date())
      target.link(lost, up: false)
      _ = JobWatching.wait(timeout: 60) { (try? JobWatching.events("membership", in: metrics).count) == 1 }
      relaunchedAt.set(Date())
    }
    if let cut = cutAt.value, let relaunched = relaunchedAt.value {
      print(
        String(format: "ElasticLaunchTests: 2 × 2: relaunched %.1f s after the cut", relaunched.timeIntervalSince(cut)))
    }
    #expect(result.status == 0 && !result.timedOut, "\(result.output)")
    let memberships = try JobWatching.events("membership", in: metrics)
    #expect(memberships.count == 1, "\(memberships)")
    #expect(memberships.first?["hosts"] as? [String] == [cluster.hosts[0]], "\(memberships)")
    #expect(memberships.first?["batch_size"] as? Int == 128 && memberships.first?["global_batch"] as? Int == 256)
    #expect(result.stdout.contains("2 workers × 128 = global batch 256"), "\(result.stdout)")
    #expect(result.stdout.contains("done: 12000 steps"), "\(result.stdout)")
  }

  @Test("a host whose ranks are killed is taken back when it answers, and left out after its third loss")
  func ranksKilledThenBackThenLeftOut() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 1)
    defer { cluster.down() }
    let scratch = try makeScratchDirectory("elastic-kills")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let metrics = scratch.appendingPathComponent("metrics.jsonl")
    let config = try Self.config(
      cluster,
      Self.train(batch: 32, steps: 40000, checkpoints: scratch.appendingPathComponent("ck"), metrics: metrics),
      in: scratch)
    nonisolated(unsafe) let target = cluster
    let flaky = cluster.hosts[1]
    let result = try DDPTrainProcess.run(
      ["launch", "--config", config, "--elastic", "--probe-every", "2"], timeout: 240
    ) { _ in
      // Three times: once the host's rank runs (again), kill it.
      for _ in 1...3 {
        guard JobWatching.wait(timeout: 60, until: { target.processes(on: flaky).contains { $0.name == "ddp-train" } })
        else { return }
        usleep(1_000_000)
        target.killAll(named: "ddp-train", on: flaky)
        _ = JobWatching.wait(timeout: 10) { !target.processes(on: flaky).contains { $0.name == "ddp-train" } }
      }
    }
    #expect(result.status == 0 && !result.timedOut, "\(result.output)")
    let reasons = try JobWatching.events("membership", in: metrics).compactMap { $0["reason"] as? String }
    #expect(reasons == ["lost", "returned", "lost", "returned", "lost"], "\(reasons)")
    #expect(result.stderr.contains("host \(flaky) was lost 3 times; leaving it out"), "\(result.stderr)")
    #expect(result.stdout.contains("done: 40000 steps"), "\(result.stdout)")
  }

  @Test("fewer hosts than --min-hosts end the job with status 69 and a message")
  func belowMinimum() throws {
    let cluster = try NamespaceCluster(hosts: 2, slots: 1)
    defer { cluster.down() }
    let scratch = try makeScratchDirectory("elastic-min")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let config = try Self.config(
      cluster, Self.train(batch: 32, steps: 1_000_000, checkpoints: scratch.appendingPathComponent("ck")),
      in: scratch)
    nonisolated(unsafe) let target = cluster
    let result = try DDPTrainProcess.run(
      ["launch", "--config", config, "--elastic", "--min-hosts", "2"], timeout: 120
    ) { _ in
      _ = JobWatching.wait(timeout: 30) { target.processes(on: target.hosts[1]).contains { $0.name == "ddp-train" } }
      usleep(1_000_000)
      target.link(target.hosts[1], up: false)
    }
    #expect(result.status == 69 && !result.timedOut, "\(result.output)")
    #expect(result.stderr.contains("fewer than --min-hosts 2"), "\(result.stderr)")
  }

  @Test(
    "bad --elastic settings are exit-2 errors naming the option",
    arguments: [
      ([] as [String], "checkpoint-dir", "--elastic"),
      (["--min-hosts", "0"], "checkpoint-dir: /tmp/x", "--min-hosts"),
      (["--min-hosts", "3"], "checkpoint-dir: /tmp/x", "--min-hosts"),
      (["--probe-every", "0"], "checkpoint-dir: /tmp/x", "--probe-every"),
    ])
  func badSettings(extra: [String], train: String, option: String) throws {
    let scratch = try makeScratchDirectory("elastic-bad")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let config = scratch.appendingPathComponent("cluster.yaml").path
    let trainSection = train == "checkpoint-dir" ? "  dataset: synthetic\n" : "  dataset: synthetic\n  \(train)\n"
    try ("cluster:\n  hosts:\n    - {name: node-a, slots: 1}\n    - {name: node-b, slots: 1}\ntrain:\n" + trainSection)
      .write(toFile: config, atomically: true, encoding: .utf8)
    let result = try DDPTrainProcess.run(["launch", "--config", config, "--elastic"] + extra, timeout: 30)
    #expect(result.status == 2, "\(result.output)")
    #expect(result.stderr.contains(option), "\(result.stderr)")
    #expect(!result.stdout.contains("mpirun"), "\(result.stdout)")
  }

  @Test("--elastic on a cluster of this host alone is an exit-2 error")
  func oneHostOnly() throws {
    let scratch = try makeScratchDirectory("elastic-local")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let config = scratch.appendingPathComponent("cluster.yaml").path
    try
      "cluster:\n  hosts:\n    - {name: localhost, slots: 2}\ntrain:\n  dataset: synthetic\n  checkpoint-dir: /tmp/x\n"
      .write(toFile: config, atomically: true, encoding: .utf8)
    let result = try DDPTrainProcess.run(["launch", "--config", config, "--elastic"], timeout: 30)
    #expect(result.status == 2, "\(result.output)")
    #expect(result.stderr.contains("--elastic") && result.stderr.contains("--max-restarts"), "\(result.stderr)")
  }
}
