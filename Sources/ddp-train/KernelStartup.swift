import CKernels
import Foundation
import Tensors
import Training

/// Start-up's first act: make OpenBLAS run the widest GEMM kernels this CPU runs, whatever started the process
/// (mpirun, `launch`, `scaling`, a shell, a namespace host).
///
/// OpenBLAS reads `OPENBLAS_CORETYPE` only while it loads, before main (Note [Unknown CPU models] in
/// `BLASKernelChoice`). When it fell back to a narrower family, ddp-train sets the variable and re-executes itself
/// with `execve`, in the same process: the pid, the parent, the arguments and `PR_SET_PDEATHSIG` stay what mpirun,
/// `launch` and the tests watch, and a stop signal held since main began stays pending across it (Note [Stop
/// signals at start-up] in StopSignals.c). It costs one exec, a few milliseconds, and happens only on a CPU
/// OpenBLAS does not know; MPI has not started yet. Ranks and runs started by this process inherit the variable.
enum KernelStartup {
  /// For the tests only: take the `OPENBLAS_CORETYPE` of the environment as if OpenBLAS had detected that family
  /// by itself, so that the fallback and the re-exec can be tested on any CPU.
  static let pretendDetectedVariable = "DDP_TRAIN_TEST_CORETYPE_IS_DETECTED"
  /// For the tests only: seconds to wait, after saying so on stderr, just before the re-exec (a stop signal sent
  /// then must survive it).
  static let pauseVariable = "DDP_TRAIN_TEST_PAUSE_BEFORE_REEXEC"

  /// An input error when the user's `OPENBLAS_CORETYPE` names a family whose instructions this CPU lacks.
  static func checkUserCoreType() throws(ConfigurationError) {
    guard case .user(let forced) = BLAS.kernelSource, let cpu = CPUDescription.current else { return }
    let missing = BLASKernelChoice.missingInstructions(coreType: forced, cpu: cpu)
    guard !missing.isEmpty else { return }
    let runnable = BLASKernelChoice.Family.allCases.filter { $0.runs(on: cpu) }.map { $0.openBLASName(amd: cpu.isAMD) }
    throw ConfigurationError(
      option: "OPENBLAS_CORETYPE", expected: "a kernel family this CPU runs (\(runnable.joined(separator: ", ")))",
      found:
        "\(forced), whose kernels use \(missing.joined(separator: ", ")), which this CPU (\(cpu.familyAndModel)) lacks",
      hint: "They would stop at the first GEMM with an illegal instruction. Unset OPENBLAS_CORETYPE: ddp-train then"
        + " runs the widest kernels this CPU runs.")
  }

  /// Re-executes this process with the widest kernel family when OpenBLAS settled on a narrower one; returns when
  /// nothing needs doing, or when the exec failed (after saying so on stderr: the run goes on with the kernels it has).
  static func useWidestKernels() {
    let environment = ProcessInfo.processInfo.environment
    // Already chosen: by this process before its re-exec, or by the ddp-train that started it.
    guard environment[BLAS.fallbackVariable] == nil else { return }
    let pretending = environment[pretendDetectedVariable] == "1"
    let userCoreType = pretending ? nil : BLAS.forcedCoreType
    let detected = BLAS.coreName
    guard let cpu = CPUDescription.current,
      let family = BLASKernelChoice.familyToForce(detected: detected, userCoreType: userCoreType, cpu: cpu)
    else { return }

    setenv("OPENBLAS_CORETYPE", family, 1)
    setenv(BLAS.fallbackVariable, "\(detected)>\(family)", 1)
    unsetenv(pretendDetectedVariable)
    if let pause = environment[pauseVariable].flatMap(Double.init) {
      FileHandle.standardError.write(Data("ddp-train: test: re-executing in \(pause) s\n".utf8))
      usleep(UInt32(pause * 1_000_000))
    }
    let failure = ddp_reexec_self(CommandLine.unsafeArgv)

    // Only when the exec failed: run on with OpenBLAS's own choice, and leave the environment as it was.
    if let original = environment["OPENBLAS_CORETYPE"] {
      setenv("OPENBLAS_CORETYPE", original, 1)
    } else {
      unsetenv("OPENBLAS_CORETYPE")
    }
    unsetenv(BLAS.fallbackVariable)
    let reason = String(cString: strerror(failure))
    FileHandle.standardError.write(
      Data(
        ("ddp-train: note: OpenBLAS fell back to its \(detected) kernels on this CPU (\(cpu.familyAndModel)), and"
          + " re-executing with OPENBLAS_CORETYPE=\(family) failed (\(reason)); set OPENBLAS_CORETYPE=\(family)"
          + " yourself for faster GEMMs\n").utf8))
  }
}

/// The commands that call OpenBLAS in this process (`train`, `eval`, `predict`, `bench`, `check-blas`): for them
/// an `OPENBLAS_CORETYPE` the CPU cannot run is an input error (`KernelStartup.checkUserCoreType`).
protocol ComputesWithBLAS {}

extension TrainCommand: ComputesWithBLAS {}
extension EvalCommand: ComputesWithBLAS {}
extension PredictCommand: ComputesWithBLAS {}
extension BenchCommand: ComputesWithBLAS {}
extension CheckBLASCommand: ComputesWithBLAS {}
