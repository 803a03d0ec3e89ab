/// The per-rank batch and accumulation of a job that `launch --elastic` relaunches on fewer (or again all) of its
/// hosts.
///
/// Invariant when `keepsGlobalBatch`: worldSize·batchSize·accumulate equals the original job's global batch, so the
/// lr schedule, the data order (one shuffle per epoch, split by position in the global batch) and every step's mean
/// gradient are the original job's, up to summation order. Otherwise no such split exists for this world size, and
/// the job continues with the original per-rank batch and accumulation: a smaller global batch, for which the lr
/// policy is recomputed (the resumed run says so in its header).
public struct ElasticLayout: Equatable, Sendable {
  public var worldSize: Int
  public var batchSize: Int
  public var accumulate: Int
  public var keepsGlobalBatch: Bool

  public var globalBatch: Int { worldSize * batchSize * accumulate }

  /// The layout for `worldSize` ranks of a job that ran `original` (K·B·M samples a step). It keeps the global
  /// batch G through the per-rank batch first: M' = M and B' = G/(K'·M), each rank's micro-batch growing by K/K';
  /// else through a smaller accumulation M' < M (the largest that divides); else not at all.
  public static func keeping(
    worldSize: Int, originalWorldSize: Int, batchSize: Int, accumulate: Int
  ) -> ElasticLayout {
    precondition(worldSize >= 1 && originalWorldSize >= 1 && batchSize >= 1 && accumulate >= 1)
    let global = originalWorldSize * batchSize * accumulate
    for candidate in stride(from: accumulate, through: 1, by: -1) where global % (worldSize * candidate) == 0 {
      return ElasticLayout(
        worldSize: worldSize, batchSize: global / (worldSize * candidate), accumulate: candidate,
        keepsGlobalBatch: true)
    }
    return ElasticLayout(worldSize: worldSize, batchSize: batchSize, accumulate: accumulate, keepsGlobalBatch: false)
  }

  /// "2 workers × 96 (× 2) = global batch 192".
  public var description: String {
    "\(worldSize) worker\(worldSize == 1 ? "" : "s") × \(batchSize)" + (accumulate > 1 ? " × \(accumulate)" : "")
      + " = global batch \(globalBatch)"
  }
}
