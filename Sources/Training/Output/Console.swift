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

/// "42s", "3m04s", "1h02m": a remaining time, as precise as it is worth (rounded up: a countdown that says 0s
/// is already over).
public func durationText(_ seconds: Double) -> String {
  guard seconds.isFinite, seconds >= 0 else { return "?" }
  let whole = Int(seconds.rounded(.up))
  if whole < 60 { return "\(whole)s" }
  if whole < 3600 { return String(format: "%dm%02ds", whole / 60, whole % 60) }
  let minutes = (whole + 59) / 60
  return String(format: "%dh%02dm", minutes / 60, minutes % 60)
}

/// The time left at the pace so far: `done` of `total` units took `seconds`. nil before there is a pace.
public func remainingSeconds(done: Int, total: Int, seconds: Double) -> Double? {
  guard done > 0, seconds > 0 else { return nil }
  return Double(max(total - done, 0)) * seconds / Double(done)
}

/// Progress inside long epochs: on a terminal a line redrawn at most 4 times a second; otherwise a
/// line every 15 seconds, so logs show life without flooding. It shows the ETA of the epoch (at the epoch's pace
/// so far) and of the run (at this run's pace so far, evaluations included).
final class ProgressLine {
  let console: Console
  let stepsPerEpoch: Int
  let totalSteps: Int
  /// The step this process started from (after a resume, not 0) and when.
  private let runStartStep: Int
  private let runStart = Date()
  private var lastPrint = Date()
  private var epochStart = Date()
  private var currentEpoch = -1
  private var startStepInEpoch = 0

  init(console: Console, stepsPerEpoch: Int, totalSteps: Int, startStep: Int) {
    self.console = console
    self.stepsPerEpoch = stepsPerEpoch
    self.totalSteps = totalSteps
    runStartStep = startStep
  }

  /// `step`: steps done in all (the run's counter, after this step).
  func update(epoch: Int, stepInEpoch: Int, step: Int, loss: Double) {
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
    let epochSeconds = now.timeIntervalSince(epochStart)
    let rate = Double(done) / max(epochSeconds, 1e-9)
    var text = String(
      format: "  epoch %d: step %d/%d (%.0f%%), train loss %.4f, %.1f steps/s", epoch + 1, stepInEpoch, stepsPerEpoch,
      100 * Double(stepInEpoch) / Double(stepsPerEpoch), loss, rate)
    let epochLeft = remainingSeconds(done: done, total: stepsPerEpoch - startStepInEpoch, seconds: epochSeconds)
    let runLeft = remainingSeconds(
      done: step - runStartStep, total: totalSteps - runStartStep, seconds: now.timeIntervalSince(runStart))
    if let epochLeft, let runLeft {
      text += ", ETA epoch \(durationText(epochLeft)), run \(durationText(runLeft))"
    }
    if console.interactive { console.transient(text) } else { console.line(text) }
  }

  func clear() {
    console.transient("")
  }
}
