import Communication
import Foundation

/// Catches a rank that calls `exit()` in the middle of training (a library, a stray `exit`, ...): without this,
/// the other ranks would wait in their next collective until mpirun noticed. While armed, an `atexit` handler
/// names the rank and the step, then aborts the whole job.
enum ExitGuard {
  private nonisolated(unsafe) static var communicator: Communicator?
  private nonisolated(unsafe) static var step = 0
  private nonisolated(unsafe) static var installed = false
  private static let lock = NSLock()

  static func arm(_ communicator: Communicator) {
    lock.withLock {
      Self.communicator = communicator
      if !installed {
        installed = true
        atexit {
          guard let communicator = ExitGuard.lock.withLock({ ExitGuard.communicator }) else { return }
          let message =
            "ddp-train: error on rank \(communicator.rank): the process exited during training (at step "
            + "\(ExitGuard.step)) without finishing; ending the job.\n"
          FileHandle.standardError.write(Data(message.utf8))
          communicator.abort(code: 1)
        }
      }
    }
  }

  static func update(step: Int) { Self.step = step }

  static func disarm() { lock.withLock { communicator = nil } }
}
