/// What a finished run reports.
public struct TrainingSummary: Sendable {
  public var steps: Int
  public var trainLoss: Double
  public var testLoss: Double
  public var testAccuracy: Double
  public var elapsedSeconds: Double
  public var checkpoint: String?
  /// Set when the run stopped early on request (`StopRequest`): what asked, e.g. "SIGTERM".
  public var stoppedBy: String?
}
