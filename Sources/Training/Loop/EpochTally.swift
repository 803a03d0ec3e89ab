/// The current epoch so far: the running sums for its train loss and accuracy, which a checkpoint carries (a
/// resumed run goes on with them), and where its step time went. The loop starts a new one at each epoch's end.
struct EpochTally {
  /// The global mean losses of the epoch's steps, summed.
  var lossSum = 0.0
  /// Correct predictions over the epoch's global batches.
  var correct = 0.0
  var steps = 0
  /// Where this epoch's step time went (seconds, this rank).
  var times = StepTimes()
}
