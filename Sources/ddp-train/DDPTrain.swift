import ArgumentParser
import CKernels
import Foundation
import MPICommunication

/// `ddp-train [train] [options]`, and the subcommands `eval`, `predict`, `plot`, `launch`, `bench`, `scaling`,
/// `check-blas`.
///
/// Exit statuses (docs/INTERFACE.md): 0 success; 2 usage, configuration or input error; 1 failure while training;
/// 3 training diverged; 4 a rank stalled (the watchdog); 75 stopped on request, resumable. Argument errors are reported before MPI starts, by rank 0 only.
@main
struct DDPTrain: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ddp-train",
    abstract: "Data-parallel SGD training of neural networks (MLPs, CNNs) over Open MPI and OpenBLAS.",
    discussion: """
      Run K workers with `mpirun -np K ddp-train [options]`, or one process alone for debugging.
      Each worker trains on its shard of every global batch K×B; gradients are averaged by all-reduce.
      """,
    subcommands: [
      TrainCommand.self, EvalCommand.self, PredictCommand.self, PlotCommand.self, LaunchCommand.self, BenchCommand.self,
      ScalingCommand.self, CheckBLASCommand.self,
    ],
    defaultSubcommand: TrainCommand.self)

  static func main() {
    // Until a command takes them over, stop signals wait (Note [Stop signals at start-up] in StopSignals.c), also
    // across the re-exec that picks OpenBLAS's kernels.
    ddp_hold_stop_signals()
    KernelStartup.useWidestKernels()
    let arguments = Array(CommandLine.arguments.dropFirst())
    do {
      var command = try parseAsRoot(arguments)
      // `train` keeps a stop asked for during start-up for its first step (StopRequest); the other commands give
      // the signals their default action back, as if nothing had held them.
      if !(command is TrainCommand) { ddp_release_stop_signals() }
      if command is ComputesWithBLAS { try KernelStartup.checkUserCoreType() }
      try command.run()
    } catch {
      let code = exitCode(for: error)
      if code == .success {
        // --help, --version: the parser's message on stdout, status 0.
        print(fullMessage(for: error))
        Foundation.exit(0)
      }
      if let explicit = error as? ExitCode { Foundation.exit(explicit.rawValue) }
      // Every rank parses the same arguments; only the one mpirun calls rank 0 says what is wrong.
      let isUsageError = code == .validationFailure
      if MPICommunicator.launchRank == 0 {
        let message = isUsageError ? fullMessage(for: error) : "error: \(error)"
        FileHandle.standardError.write(Data(("ddp-train: " + message + "\n").utf8))
      } else if MPICommunicator.isLaunchedByMPI {
        // Let rank 0 print first: mpirun kills every rank as soon as one exits non-zero, and ends the job when
        // rank 0 exits, so this wait costs nothing.
        sleep(3)
      }
      Foundation.exit(isUsageError ? ExitStatus.inputError : exitStatus(for: error))
    }
  }
}

/// The exit statuses of docs/INTERFACE.md, "Exit status".
enum ExitStatus {
  static let success: Int32 = 0
  static let trainingFailure: Int32 = 1
  static let inputError: Int32 = 2
  static let diverged: Int32 = 3
  /// A rank's watchdog ended the job: some rank stopped making progress (`--step-timeout`).
  static let stalled: Int32 = 4
  /// Stopped on request (SIGTERM, SIGINT or SIGUSR1) after a step, with a checkpoint of that step when
  /// --checkpoint-dir is set: resumable. 75 is sysexits' EX_TEMPFAIL, "try again later".
  static let stopped: Int32 = 75
}
