import Testing

@testable import Benchmarks

@Suite struct StatisticsTests {
  @Test func medianOfOddAndEvenCounts() {
    #expect(median([]) == nil)
    #expect(median([3]) == 3)
    #expect(median([5, 1, 3]) == 3)
    #expect(median([4, 1, 3, 2]) == 2.5)
  }

  @Test func throughputDropsWarmupWindows() {
    let windows = [
      TimedWindow(samples: 100, seconds: 10), TimedWindow(samples: 600, seconds: 1),
      TimedWindow(samples: 800, seconds: 2), TimedWindow(samples: 500, seconds: 1),
    ]
    // After dropping the first: 600, 400, 500 samples/s.
    #expect(medianThroughput(windows, warmup: 1) == 500)
    #expect(medianThroughput(windows, warmup: 4) == nil)
  }

  @Test func gigaflopsGuardsAgainstZeroTime() {
    #expect(gigaflops(2e9, seconds: 0.5) == 4)
    #expect(gigaflops(1, seconds: 0) == 0)
  }

  @Test func epochRecordsAreParsedFromMetricsLines() {
    let lines = [
      #"{"event":"run","world_size":2}"#,
      #"{"event":"epoch","epoch":1,"step":468,"samples_per_sec":60000.5,"epoch_s":1.0,"time_data_s":0.1,"time_compute_s":0.7,"time_allreduce_s":0.05,"time_other_s":0.15}"#,
      "not json",
      #"{"event":"epoch","epoch":2,"step":936,"samples_per_sec":61000,"epoch_s":0.98}"#,
    ]
    let records = EpochRecord.parse(lines: lines)
    #expect(records.count == 2)
    #expect(records[0].samplesPerSecond == 60000.5 && records[0].allReduceSeconds == 0.05)
    #expect(records[1].step == 936 && records[1].dataSeconds == 0)
  }

  @Test func peakResidentSizeIsPlausible() {
    let bytes = peakResidentBytes()
    #expect(bytes > 1_000_000 && bytes < 100_000_000_000)
  }
}
