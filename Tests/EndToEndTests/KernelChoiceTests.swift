import Foundation
import Tensors
import TestSupport
import Testing

/// The kernels ddp-train runs (Note [Unknown CPU models] in `BLASKernelChoice`): every family this CPU runs computes
/// the layers' GEMMs right; OpenBLAS's fallback to a narrower family is replaced by the widest one however the
/// program starts, in the same process, without losing a stop signal; a user's own `OPENBLAS_CORETYPE` is kept.
///
/// On a CPU that OpenBLAS recognises, its fallback is made to happen: `DDP_TRAIN_TEST_CORETYPE_IS_DETECTED=1` has
/// ddp-train take `OPENBLAS_CORETYPE=Prescott` (which OpenBLAS then really runs) as OpenBLAS's own choice.
@Suite(.serialized) struct KernelChoiceTests {
  static let cpu = CPUDescription.current
  /// The family ddp-train should end up running after a fallback: the widest this CPU runs.
  static let widest: String? = cpu.flatMap { cpu in
    BLASKernelChoice.Family.widest(on: cpu).map { $0.openBLASName(amd: cpu.isAMD) }
  }
  /// The families OpenBLAS's GEMMs are checked under, each in a process of its own (OpenBLAS picks once per
  /// process): those of the list whose instructions `/proc/cpuinfo` lists.
  static let familiesThisCPURuns: [String] = {
    guard let cpu else { return [] }
    let checked: [BLASKernelChoice.Family] = [.prescott, .nehalem, .sandybridge, .haswell, .skylakeX, .cooperlake]
    return checked.filter { $0.runs(on: cpu) }.map { $0.openBLASName(amd: false) }
  }()
  static let pretendFallback = ["OPENBLAS_CORETYPE": "Prescott", "DDP_TRAIN_TEST_CORETYPE_IS_DETECTED": "1"]
  static let shortRun = [
    "--dataset", "synthetic", "--synthetic-train", "512", "--synthetic-test", "128", "--model", "mlp:16",
    "--batch-size", "16", "--max-steps", "3",
  ]

  /// What the header says after ddp-train replaced OpenBLAS's (pretended) Prescott fallback.
  static func replacedFallback(in output: String) -> Bool {
    guard let widest, let cpu else { return false }
    return output.contains("OpenBLAS \(widest) kernels (OpenBLAS ")
      && output.contains(" fell back to Prescott on this CPU, \(cpu.familyAndModel))")
  }

  @Test(
    "cblas_sgemm matches a double-precision loop under the kernels ddp-train picks and under each family this CPU runs",
    arguments: [nil] + familiesThisCPURuns)
  func gemmUnderEveryFamily(family: String?) throws {
    let environment = family.map { ["OPENBLAS_CORETYPE": $0] } ?? [:]
    let result = try DDPTrainProcess.run(["check-blas"], timeout: 120, extraEnvironment: environment)
    #expect(result.status == 0, "\(result.output)")
    #expect(result.stdout.contains(": ok"), "\(result.stdout)")
    if let family {
      // OpenBLAS really ran that family (a build without it would fall back silently).
      #expect(result.stdout.contains("check-blas: \(family) kernels"), "\(result.stdout)")
    }
  }

  @Test("OpenBLAS's fallback is replaced by the widest family: alone, under mpirun, through launch, in bench")
  func fallbackIsReplacedEverywhere() throws {
    try #require(Self.widest != nil, "no /proc/cpuinfo flags to decide from")
    let alone = try DDPTrainProcess.run(Self.shortRun, timeout: 120, extraEnvironment: Self.pretendFallback)
    #expect(alone.status == 0, "\(alone.output)")
    #expect(Self.replacedFallback(in: alone.stdout), "\(alone.stdout)")
    // No note: what runs is the widest the CPU runs.
    #expect(!alone.stdout.contains("note:"), "\(alone.stdout)")

    let check = try DDPTrainProcess.run(["check-blas"], timeout: 120, extraEnvironment: Self.pretendFallback)
    #expect(check.status == 0, "\(check.output)")
    #expect(check.stdout.contains("check-blas: \(Self.widest!) kernels"), "\(check.stdout)")

    let bench = try DDPTrainProcess.run(
      ["bench"] + Self.shortRun.filter { $0 != "--max-steps" && $0 != "3" } + [
        "--windows", "1", "--warmup", "0", "--no-gemm-reference",
      ], timeout: 120, extraEnvironment: Self.pretendFallback)
    #expect(bench.status == 0, "\(bench.output)")
    #expect(Self.replacedFallback(in: bench.stdout), "\(bench.stdout)")

    guard DDPTrainProcess.mpirunAvailable else { return }
    let ranks = try DDPTrainProcess.mpirun(
      ranks: 2, Self.shortRun, timeout: 120, extraEnvironment: Self.pretendFallback)
    #expect(ranks.status == 0, "\(ranks.output)")
    #expect(Self.replacedFallback(in: ranks.stdout), "\(ranks.stdout)")

    let scratch = try makeScratchDirectory("kernels-launch")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let config = try writeLocalLaunchConfig(in: scratch, maxSteps: 3)
    let launched = try DDPTrainProcess.run(
      ["launch", "--config", config], timeout: 120, extraEnvironment: Self.pretendFallback)
    #expect(launched.status == 0, "\(launched.output)")
    #expect(Self.replacedFallback(in: launched.stdout), "\(launched.stdout)")
  }

  /// On namespace hosts the variables reach the ranks through `mpirun -x`, as on a real cluster, and each rank,
  /// whatever its host, makes the choice itself: nothing is inherited from a ddp-train that chose before it.
  @Test(
    "on namespace hosts every rank replaces OpenBLAS's fallback itself",
    .enabled(
      if: DDPTrainProcess.mpirunAvailable && NamespaceCluster.available,
      "needs mpirun, root, iproute2 and util-linux to make namespace hosts (launch/cluster up)"))
  func fallbackIsReplacedOnEveryHost() throws {
    try #require(Self.widest != nil, "no /proc/cpuinfo flags to decide from")
    let cluster = try NamespaceCluster(hosts: 2, slots: 1)
    defer { cluster.down() }
    let pass = Self.pretendFallback.sorted { $0.key < $1.key }.flatMap { ["-x", "\($0.key)=\($0.value)"] }
    // One check-blas per host (it does not use MPI): each says what it runs and why.
    let checks = try cluster.mpirun(
      ranks: 2, program: DDPTrainProcess.binary, ["check-blas"], timeout: 60, mpirunOptions: pass)
    #expect(checks.status == 0, "\(checks.output)")
    let replaced = checks.stdout.split(separator: "\n").filter { Self.replacedFallback(in: String($0)) }
    #expect(replaced.count == 2, "\(checks.stdout)")
    #expect(
      checks.stdout.components(separatedBy: "check-blas: \(Self.widest!) kernels").count == 3, "\(checks.stdout)")
    // A training job across the two hosts.
    let job = try cluster.mpirun(
      ranks: 2, program: DDPTrainProcess.binary, Self.shortRun, timeout: 120, mpirunOptions: pass)
    #expect(job.status == 0, "\(job.output)")
    #expect(Self.replacedFallback(in: job.stdout), "\(job.stdout)")
  }

  @Test("the re-executed program runs in the same process: the pid mpirun and launch watch is the one that trains")
  func reexecKeepsThePid() throws {
    try #require(Self.widest != nil, "no /proc/cpuinfo flags to decide from")
    let scratch = try makeScratchDirectory("kernels-pid")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let sawNewImage = LockedBox<Bool>()
    let result = try DDPTrainProcess.run(
      Self.shortRun.map { $0 == "3" ? "100000" : $0 } + ["--checkpoint-dir", scratch.path], timeout: 120,
      extraEnvironment: Self.pretendFallback
    ) { pid in
      // The environment the kernel shows for the pid is the one the program image was started with: after the
      // re-exec it holds what ddp-train set.
      for _ in 0..<1000 {
        let environ = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))) ?? Data()
        if String(decoding: environ, as: UTF8.self).contains("DDP_TRAIN_BLAS_FALLBACK=Prescott>") {
          sawNewImage.set(true)
          break
        }
        usleep(10_000)
      }
      usleep(300_000)
      kill(pid, SIGTERM)
    }
    #expect(sawNewImage.value == true, "the started pid never showed the re-executed environment: \(result.output)")
    #expect(result.status == 75, "\(result.output)")
    #expect(Self.replacedFallback(in: result.stdout), "\(result.stdout)")
  }

  /// A stop signal sent while the process is about to re-execute itself stays pending across the exec and stops
  /// the run after its first step, with a checkpoint. Two OpenBLAS threads, so that the signal may land on
  /// OpenBLAS's own thread, which must pass it on rather than die by it.
  @Test("a stop signal that arrives just before the re-exec is kept: the run stops after its first step (75)")
  func stopSignalSurvivesTheReexec() throws {
    try #require(Self.widest != nil, "no /proc/cpuinfo flags to decide from")
    let scratch = try makeScratchDirectory("kernels-stop")
    defer { try? FileManager.default.removeItem(at: scratch) }
    var environment = Self.pretendFallback
    environment["DDP_TRAIN_TEST_PAUSE_BEFORE_REEXEC"] = "3"
    environment["OPENBLAS_NUM_THREADS"] = "2"
    let result = try DDPTrainProcess.run(
      Self.shortRun.map { $0 == "3" ? "100000" : $0 } + ["--checkpoint-dir", scratch.path], timeout: 120,
      extraEnvironment: environment
    ) { pid in
      usleep(1_200_000)
      kill(pid, SIGUSR1)
    }
    #expect(result.stderr.contains("re-executing in 3.0 s"), "\(result.output)")
    #expect(result.signal == nil, "ended by a signal: \(result.output)")
    #expect(result.status == 75, "\(result.output)")
    #expect(result.stdout.contains("stopped by SIGUSR1 after step 1"), "\(result.stdout)")
    #expect(Self.replacedFallback(in: result.stdout), "\(result.stdout)")
    #expect(FileManager.default.fileExists(atPath: scratch.appendingPathComponent("step-00000001").path))
  }

  @Test("a user's OPENBLAS_CORETYPE is kept and named, with a note when the CPU runs wider kernels")
  func userCoreTypeIsKept() throws {
    let result = try DDPTrainProcess.run(
      Self.shortRun, timeout: 120, extraEnvironment: ["OPENBLAS_CORETYPE": "Prescott"])
    #expect(result.status == 0, "\(result.output)")
    #expect(
      result.stdout.contains("blas:  OpenBLAS Prescott kernels (forced by OPENBLAS_CORETYPE=Prescott)"),
      "\(result.stdout)")
    if let widest = Self.widest, widest != "Prescott" {
      #expect(
        result.stdout.contains(
          "note:  OPENBLAS_CORETYPE=Prescott holds OpenBLAS to Prescott kernels on this CPU, which runs \(widest)"),
        "\(result.stdout)")
    }
  }

  /// The widest family this CPU lacks, for the next test; nil on a CPU that runs them all.
  static let familyThisCPULacks: String? = cpu.flatMap { cpu in
    BLASKernelChoice.Family.allCases.last { !$0.runs(on: cpu) }?.openBLASName(amd: false)
  }

  @Test(
    "an OPENBLAS_CORETYPE whose instructions the CPU lacks is an input error (2), not an illegal instruction",
    .enabled(if: familyThisCPULacks != nil, "this CPU runs every OpenBLAS family ddp-train knows"))
  func unrunnableCoreTypeIsAnInputError() throws {
    let family = Self.familyThisCPULacks!
    let result = try DDPTrainProcess.run(Self.shortRun, timeout: 60, extraEnvironment: ["OPENBLAS_CORETYPE": family])
    #expect(result.status == 2, "\(result.output)")
    #expect(result.signal == nil)
    let lines = result.stderr.split(separator: "\n")
    #expect(lines.count == 1, "\(result.stderr)")
    #expect(result.stderr.contains("OPENBLAS_CORETYPE: expected a kernel family this CPU runs"), "\(result.stderr)")
    #expect(result.stderr.contains("found \(family)"), "\(result.stderr)")
    #expect(result.stdout.isEmpty, "\(result.stdout)")
  }
}
