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
    return try MPICommunicator()
  }
  return SingleProcessCommunicator()
}

func finishJob(_ communicator: Communicator) {
  communicator.finalize()
}
