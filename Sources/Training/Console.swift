import Foundation

/// Rank 0's voice: every other rank's console is silent (docs/INTERFACE.md, "Running").
public final class Console: @unchecked Sendable {
  public let enabled: Bool
  /// Whether stdout is a terminal, where progress can redraw one line in place.
  let interactive: Bool

  /// `allowRedraw`: false under mpirun, which gives ranks a pseudo-terminal even when its own output goes to a
  /// file, so a rank cannot tell whether a person is watching.
  public init(enabled: Bool, allowRedraw: Bool = true) {
    self.enabled = enabled
    interactive = allowRedraw && isatty(STDOUT_FILENO) != 0
  }

  public func line(_ text: String) {
    guard enabled else { return }
    print(text)
    fflush(nil)
  }

  /// Redraws the current line (terminals only).
  func transient(_ text: String) {
    guard enabled, interactive else { return }
    print("\r\u{1B}[2K" + text, terminator: "")
    fflush(nil)
  }
}

/// Progress inside long epochs: on a terminal a line redrawn at most 4 times a second; otherwise a
/// line every 15 seconds, so logs show life without flooding.
final class ProgressLine {
  let console: Console
  let stepsPerEpoch: Int
  private var lastPrint = Date()
  private var epochStart = Date()
  private var currentEpoch = -1
  private var startStepInEpoch = 0

  init(console: Console, stepsPerEpoch: Int) {
    self.console = console
    self.stepsPerEpoch = stepsPerEpoch
  }

  func update(epoch: Int, stepInEpoch: Int, loss: Double) {
    guard console.enabled else { return }
    if epoch != currentEpoch {
      currentEpoch = epoch
      epochStart = Date()
      lastPrint = Date()
      startStepInEpoch = stepInEpoch - 1
    }
    let now = Date()
    let interval = now.timeIntervalSince(lastPrint)
    guard interval >= (console.interactive ? 0.25 : 15) else { return }
    lastPrint = now
    let done = stepInEpoch - startStepInEpoch
    let rate = Double(done) / max(now.timeIntervalSince(epochStart), 1e-9)
    let text = String(
      format: "  epoch %d: step %d/%d (%.0f%%), train loss %.4f, %.1f steps/s", epoch + 1, stepInEpoch, stepsPerEpoch,
      100 * Double(stepInEpoch) / Double(stepsPerEpoch), loss, rate)
    if console.interactive { console.transient(text) } else { console.line(text) }
  }

  func clear() {
    console.transient("")
  }
}
