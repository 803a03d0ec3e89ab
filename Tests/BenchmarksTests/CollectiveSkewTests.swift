import HostCounters
import Testing

@testable import Benchmarks

@Suite struct CollectiveSkewTests {
  @Test("waiting and transfer against a hand-worked example")
  func handWorkedExample() {
    // Step 0: rank 1 arrives 300 ns after rank 0; both leave at 1000. Step 1: rank 0 arrives last (at 2500).
    let entries: [[UInt64]] = [[100, 2500], [400, 2000]]
    let exits: [[UInt64]] = [[1000, 2600], [1000, 2650]]
    let rank0 = CollectiveSkew.of(rank: 0, entries: entries, exits: exits, steps: 0..<2)
    // Rank 0 waited 300 then 0 ns; after the last arrival it spent 600 then 100 ns.
    #expect(abs(rank0.waiting - 150e-9) < 1e-15)
    #expect(abs(rank0.transfer - 350e-9) < 1e-15)
    let rank1 = CollectiveSkew.of(rank: 1, entries: entries, exits: exits, steps: 0..<2)
    #expect(abs(rank1.waiting - 250e-9) < 1e-15)
    #expect(abs(rank1.transfer - 375e-9) < 1e-15)
    // waiting + transfer is each rank's whole time in the collective.
    let total0 = Double((1000 - 100) + (2600 - 2500)) / 2 * 1e-9
    #expect(abs(rank0.waiting + rank0.transfer - total0) < 1e-15)
  }

  @Test("a reading taken after another rank already left counts as no transfer, never negative")
  func clampsAtZero() {
    let skew = CollectiveSkew.of(rank: 0, entries: [[10], [50]], exits: [[40], [60]], steps: 0..<1)
    #expect(skew.transfer == 0)
    #expect(abs(skew.waiting - 40e-9) < 1e-15)
    #expect(CollectiveSkew.of(rank: 0, entries: [[1]], exits: [[2]], steps: 0..<0) == .init(waiting: 0, transfer: 0))
  }
}

@Suite struct CPUTimesTests {
  static let before = """
    cpu  1294877 0 138662 946474 12714 0 3085 299876 0 0
    cpu0 694226 0 64114 476446 9370 0 1043 150671 0 0
    intr 1
    """
  static let after = """
    cpu  1295480 0 138682 948381 12714 0 3085 301876 0 0
    cpu0 694526 0 64124 477446 9370 0 1043 151671 0 0
    """

  @Test func parsesTheAggregateLine() throws {
    let times = try #require(CPUTimes.parse(procStat: Self.before))
    #expect(times.steal == 299_876)
    #expect(times.total == 1_294_877 + 138_662 + 946_474 + 12_714 + 3085 + 299_876)
  }

  @Test func stealFractionOfTheTimeBetween() throws {
    let earlier = try #require(CPUTimes.parse(procStat: Self.before))
    let later = try #require(CPUTimes.parse(procStat: Self.after))
    // Δuser 603, Δsystem 20, Δidle 1907, Δsteal 2000: 2000 / 4530.
    let fraction = try #require(later.stealFraction(since: earlier))
    #expect(abs(fraction - 2000.0 / 4530.0) < 1e-12)
    #expect(earlier.stealFraction(since: earlier) == nil)
  }

  @Test func rejectsTextWithoutTheStealColumn() {
    #expect(CPUTimes.parse(procStat: "cpu  1 2 3 4\n") == nil)
    #expect(CPUTimes.parse(procStat: "intr 5\n") == nil)
  }
}
