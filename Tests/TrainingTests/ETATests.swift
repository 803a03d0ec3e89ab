import Testing

@testable import Training

/// The progress line's ETA: the time left at the pace so far, and how it is written.
struct ETATests {
  @Test("remaining time at the pace so far, by hand")
  func remaining() {
    // 30 of 120 steps took 15 s: 90 left at 0.5 s each.
    #expect(remainingSeconds(done: 30, total: 120, seconds: 15) == 45)
    #expect(remainingSeconds(done: 120, total: 120, seconds: 15) == 0)
    #expect(remainingSeconds(done: 0, total: 120, seconds: 15) == nil)
    #expect(remainingSeconds(done: 5, total: 120, seconds: 0) == nil)
  }

  @Test("durations: seconds, minutes and seconds, hours and minutes, rounded up")
  func text() {
    #expect(durationText(0) == "0s")
    #expect(durationText(41.2) == "42s")
    #expect(durationText(59.5) == "1m00s")
    #expect(durationText(184) == "3m04s")
    #expect(durationText(3600) == "1h00m")
    #expect(durationText(3721) == "1h03m")
    #expect(durationText(.infinity) == "?")
  }
}
