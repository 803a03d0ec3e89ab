/// Splits the exposed time of a step's gradient collective into what synchronous data parallelism costs by itself
/// and what moving the data costs.
///
/// A collective cannot complete on any rank before the last rank has entered it. So for rank r at step t, with
/// `entry[q][t]` and `exit[q][t]` the monotonic clock readings (one clock shared by every process of a host) when
/// rank q entered and left the step's collective:
///   waiting  = max_q entry[q][t] − entry[r][t]   (r was early: the time it waited for the slowest rank)
///   transfer = exit[r][t] − max_q entry[q][t]    (the collective's own work once everyone is there)
/// and waiting + transfer = exit[r][t] − entry[r][t], the exposed time the step split reports. Waiting comes from
/// ranks computing at different speeds (host noise, a vCPU descheduled by the hypervisor); only transfer can be
/// made cheaper by a better collective.
public struct CollectiveSkew: Equatable, Sendable {
  /// Mean seconds per step that the rank waited for the last rank to arrive.
  public var waiting: Double
  /// Mean seconds per step from the last rank's arrival to the rank leaving the collective.
  public var transfer: Double

  public init(waiting: Double, transfer: Double) {
    self.waiting = waiting
    self.transfer = transfer
  }

  /// `rank`'s means over `steps`. entries/exits: nanoseconds, [rank][step], every rank's array at least as long as
  /// the largest step. A clamp at 0 keeps a clock reading taken a little after the collective returned (on another
  /// rank) from producing a negative transfer.
  public static func of(
    rank: Int, entries: [[UInt64]], exits: [[UInt64]], steps: Range<Int>
  ) -> CollectiveSkew {
    precondition(entries.count == exits.count && entries.indices.contains(rank), "one array per rank")
    guard !steps.isEmpty else { return CollectiveSkew(waiting: 0, transfer: 0) }
    var waiting = 0.0
    var transfer = 0.0
    for step in steps {
      let lastArrival = entries.map { $0[step] }.max()!
      waiting += Double(lastArrival - entries[rank][step])
      transfer += Double(max(Int64(bitPattern: exits[rank][step] &- lastArrival), 0))
    }
    let count = Double(steps.count) * 1e9
    return CollectiveSkew(waiting: waiting / count, transfer: transfer / count)
  }
}
