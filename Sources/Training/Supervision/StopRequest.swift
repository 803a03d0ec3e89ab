import CKernels
import Foundation

/// A stop asked for by a signal (a scheduler's SIGTERM, Ctrl-C's SIGINT, or SIGUSR1, which mpirun forwards to
/// every rank). The handler (C, `ddp_install_stop_handlers`) only records the first signal; each step every rank
/// adds "I was asked to stop" to the gradient reduction's tail (`Trainer.GradientTail.stopRequests`), so all ranks
/// learn of a request on any rank in the same step and stop after it together. A second signal ends the process
/// at once (the signal's default action).
public enum StopRequest {
  /// Installs the handlers; `train` calls it first thing, before MPI starts. Without it the signals keep their defaults.
  public static func install() { ddp_install_stop_handlers() }

  /// The first stop signal this process received, or nil.
  public static var signal: Int32? {
    let number = ddp_stop_signal()
    return number == 0 ? nil : number
  }

  /// "SIGTERM", "SIGINT", "SIGUSR1", or "signal N".
  public static func name(_ signal: Int32) -> String {
    switch signal {
    case SIGTERM: return "SIGTERM"
    case SIGINT: return "SIGINT"
    case SIGUSR1: return "SIGUSR1"
    default: return "signal \(signal)"
    }
  }
}
