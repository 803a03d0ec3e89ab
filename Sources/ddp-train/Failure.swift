import CKernels
import Checkpoints
import Communication
import Datasets
import Diagnostics
import Foundation
import Layers
import MPICommunication
import Optimizers
import Training

/// Which errors are the user's input (exit 2) and which are failures while training.
func exitStatus(for error: Error) -> Int32 {
  switch error {
  case is InputError:
    return ExitStatus.inputError
  case let failure as PeerFailure:
    return failure.exitCode
  case TrainingError.diverged:
    return ExitStatus.diverged
  default:
    return ExitStatus.trainingFailure
  }
}

/// Prints one line to stderr, prefixed with the program and, in a world of several, the rank.
func reportError(_ error: Error, rank: Int, worldSize: Int) {
  let who = worldSize > 1 ? "ddp-train: error on rank \(rank): " : "ddp-train: error: "
  FileHandle.standardError.write(Data((who + "\(error)" + "\n").utf8))
}

/// Ends the whole job after `error`: the rank that saw it reports once; ranks that only learned of a peer's
/// failure stay silent. With MPI the job is aborted (every rank ends at once, mpirun exits non-zero);
/// alone, the process exits.
func endJob(after error: Error, communicator: Communicator) -> Never {
  let code = exitStatus(for: error)
  if error is PeerFailure {
    // The failing rank is printing its message and aborting the job; wait to be ended by it, but never hang:
    // if the abort does not come, go on our own.
    sleep(5)
    communicator.abort(code: code)
  }
  reportError(error, rank: communicator.rank, worldSize: communicator.size)
  fflush(nil)
  if communicator.size == 1 {
    // A world of one (under mpirun or not): end cleanly, so mpirun reports our status without an abort banner.
    communicator.finalize()
    exit(code)
  }
  communicator.abort(code: code)
}

/// The world this process is part of: MPI when started by mpirun, else a world of one without MPI at all.
func makeCommunicator() throws -> Communicator {
  if MPICommunicator.isLaunchedByMPI {
    // When this host's Open MPI daemon dies, its ranks go with it instead of waiting in a collective forever.
    _ = ddp_die_with_parent()
    guardLauncherLeftWaiting()
    return try MPICommunicator()
  }
  return SingleProcessCommunicator()
}

/// How long after this host's ranks ended in a failed job an mpirun still running is taken to be waiting for a host
/// it cannot reach. A reachable job's mpirun is gone within about a second of an abort.
let launcherGrace = 3.0

/// Under a plain mpirun whose ranks span several hosts, the first rank on mpirun's own host starts the guard of
/// Note [A launcher left waiting] (LauncherGuard.c): then a lost link ends the job within the step timeout plus a
/// few seconds, as under `launch`, instead of when TCP gives up.
func guardLauncherLeftWaiting() {
  let environment = ProcessInfo.processInfo.environment
  guard environment["OMPI_COMM_WORLD_LOCAL_RANK"] == "0",
    let size = environment["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init),
    let localSize = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init), localSize < size,
    let parent = try? String(contentsOfFile: "/proc/\(getppid())/comm", encoding: .utf8),
    ["mpirun", "mpiexec", "orterun", "prterun"].contains(parent.trimmingCharacters(in: .whitespacesAndNewlines))
  else { return }
  let host = ProcessInfo.processInfo.hostName
  let message =
    "ddp-train: the job failed, and mpirun was still running \(Int(launcherGrace)) s after its ranks on \(host) "
    + "had ended: it is waiting for a host it cannot reach (a rank's watchdog message above names the ranks that "
    + "stopped answering). Ended mpirun (SIGKILL) instead of letting it wait until TCP gives up.\n"
  _ = ddp_guard_launcher(launcherGrace, message)
}

func finishJob(_ communicator: Communicator) {
  communicator.finalize()
}
