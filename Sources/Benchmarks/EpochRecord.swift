import Foundation

/// What the trainer's metrics say about one epoch (JSON Lines `"event":"epoch"`, see README "Metrics"):
/// the timed window and rank 0's time split. Evaluation is not inside `seconds` (the trainer stops the epoch
/// clock before it evaluates).
public struct EpochRecord: Equatable, Sendable {
  public var epoch: Int
  /// Optimizer steps completed at the end of the epoch.
  public var step: Int
  public var samplesPerSecond: Double
  public var seconds: Double
  public var dataSeconds: Double
  public var computeSeconds: Double
  public var allReduceSeconds: Double
  public var otherSeconds: Double

  /// The epoch events of a metrics file's lines, in order; other events and unreadable lines are skipped.
  public static func parse(lines: [String]) -> [EpochRecord] {
    lines.compactMap { line in
      guard let data = line.data(using: .utf8),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
        object["event"] as? String == "epoch",
        let epoch = object["epoch"] as? Int, let step = object["step"] as? Int,
        let rate = number(object["samples_per_sec"]), let seconds = number(object["epoch_s"])
      else { return nil }
      return EpochRecord(
        epoch: epoch, step: step, samplesPerSecond: rate, seconds: seconds,
        dataSeconds: number(object["time_data_s"]) ?? 0,
        computeSeconds: number(object["time_compute_s"]) ?? 0,
        allReduceSeconds: number(object["time_allreduce_s"]) ?? 0,
        otherSeconds: number(object["time_other_s"]) ?? 0)
    }
  }

  private static func number(_ value: Any?) -> Double? {
    (value as? NSNumber)?.doubleValue
  }
}
