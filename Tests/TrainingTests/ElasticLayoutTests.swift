import Testing

@testable import Training

/// `launch --elastic` keeps K'·B'·M' = K·B·M where a split exists: checked against every split found by brute force.
struct ElasticLayoutTests {
  @Test("the global batch is kept whenever some B' and M' <= M split it; M stays when it can")
  func keepsTheGlobalBatchWhereASplitExists() {
    for originalWorldSize in 1...8 {
      for batchSize in [1, 3, 32, 48, 64, 96] {
        for accumulate in 1...4 {
          for worldSize in 1...originalWorldSize {
            let layout = ElasticLayout.keeping(
              worldSize: worldSize, originalWorldSize: originalWorldSize, batchSize: batchSize,
              accumulate: accumulate)
            let global = originalWorldSize * batchSize * accumulate
            // Every split (B', M') with M' <= M, by brute force; the chosen one has the largest M'.
            let splits = (1...accumulate).filter { global % (worldSize * $0) == 0 }
            #expect(layout.worldSize == worldSize)
            if let best = splits.max() {
              #expect(layout.keepsGlobalBatch && layout.globalBatch == global, "\(layout)")
              #expect(layout.accumulate == best && layout.batchSize == global / (worldSize * best), "\(layout)")
            } else {
              #expect(!layout.keepsGlobalBatch, "\(layout)")
              #expect(layout.batchSize == batchSize && layout.accumulate == accumulate, "\(layout)")
            }
          }
        }
      }
    }
  }

  @Test("the cases of the README")
  func readmeCases() {
    // 3 hosts × 1 rank × 32 lose one: 2 × 48.
    #expect(
      ElasticLayout.keeping(worldSize: 2, originalWorldSize: 3, batchSize: 32, accumulate: 1)
        == ElasticLayout(worldSize: 2, batchSize: 48, accumulate: 1, keepsGlobalBatch: true))
    // 2 hosts × 2 ranks × 64 lose one: 2 × 128.
    #expect(
      ElasticLayout.keeping(worldSize: 2, originalWorldSize: 4, batchSize: 64, accumulate: 1).batchSize == 128)
    // 4 × 64 = 256 on 3 ranks: no split; 3 × 64 = 192.
    let none = ElasticLayout.keeping(worldSize: 3, originalWorldSize: 4, batchSize: 64, accumulate: 1)
    #expect(!none.keepsGlobalBatch && none.globalBatch == 192)
    // 4 × 6 × 2 = 48 on 3 ranks: 3 × 8 × 2.
    #expect(
      ElasticLayout.keeping(worldSize: 3, originalWorldSize: 4, batchSize: 6, accumulate: 2)
        == ElasticLayout(worldSize: 3, batchSize: 8, accumulate: 2, keepsGlobalBatch: true))
    // 6 × 1 × 2 = 12 on 4 ranks: 12/(4·2) is no whole batch, 12/(4·1) is: 4 × 3 × 1 (M' < M).
    #expect(
      ElasticLayout.keeping(worldSize: 4, originalWorldSize: 6, batchSize: 1, accumulate: 2)
        == ElasticLayout(worldSize: 4, batchSize: 3, accumulate: 1, keepsGlobalBatch: true))
  }
}
