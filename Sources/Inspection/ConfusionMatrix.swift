import Foundation

/// Counts of (true class, predicted class) over a test set, and the per-class scores they give.
///
/// `counts[t][p]` is how many samples of true class t the model predicted as p: rows true, columns predicted.
/// The diagonal holds the right answers; row t sums to the number of samples of class t; the whole sums to the
/// test-set size.
public struct ConfusionMatrix: Equatable, Sendable {
  public let classCount: Int
  /// The most classes `eval` draws a matrix for: classes² counts, and a table a person can read.
  public static let maxClasses = 100
  public private(set) var counts: [[Int]]

  public init(classCount: Int) {
    self.classCount = classCount
    counts = Array(repeating: Array(repeating: 0, count: classCount), count: classCount)
  }

  public init(_ predictions: [Prediction], classCount: Int) {
    self.init(classCount: classCount)
    for prediction in predictions { counts[prediction.trueLabel][prediction.predicted] += 1 }
  }

  public var total: Int { counts.joined().reduce(0, +) }
  public var correct: Int { (0..<classCount).reduce(0) { $0 + counts[$1][$1] } }
  public var accuracy: Double { total == 0 ? .nan : Double(correct) / Double(total) }

  /// One class's scores: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic mean;
  /// NaN where the denominator is 0 (a class never predicted has no precision).
  public struct ClassScores: Equatable, Sendable {
    public var label: Int
    /// Samples of this class in the test set (its row's sum).
    public var support: Int
    public var truePositives: Int
    public var precision: Double
    public var recall: Double
    public var f1: Double
  }

  public func scores(of label: Int) -> ClassScores {
    let truePositives = counts[label][label]
    let support = counts[label].reduce(0, +)
    let predictedAs = (0..<classCount).reduce(0) { $0 + counts[$1][label] }
    let precision = predictedAs == 0 ? Double.nan : Double(truePositives) / Double(predictedAs)
    let recall = support == 0 ? Double.nan : Double(truePositives) / Double(support)
    let f1: Double
    if precision.isNaN || recall.isNaN {
      f1 = .nan
    } else {
      f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall)
    }
    return ClassScores(
      label: label, support: support, truePositives: truePositives, precision: precision, recall: recall, f1: f1)
  }

  public var allScores: [ClassScores] { (0..<classCount).map(scores(of:)) }

  /// The console table: per-class accuracy (= recall), precision, recall, F1 and support, then the matrix with
  /// the class names down the side (true) and their numbers across the top (predicted).
  public func text(names: [String]) -> String {
    let nameWidth = max(12, (names.map(\.count).max() ?? 0) + 2)
    func pad(_ text: String, _ width: Int) -> String {
      text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }
    func number(_ value: Double) -> String { value.isNaN ? "     -" : String(format: "%6.4f", value) }
    var lines = [pad("class", nameWidth + 4) + "  accuracy  precision  recall      F1  support"]
    for score in allScores {
      lines.append(
        pad(String(format: "%2d ", score.label) + " " + names[score.label], nameWidth + 4) + "    "
          + number(score.recall) + "     " + number(score.precision) + "  " + number(score.recall) + "  "
          + number(score.f1) + String(format: " %8d", score.support))
    }
    lines.append("(a class's accuracy is its recall: the share of its samples predicted right)")
    lines.append(String(format: "accuracy %.4f (%d of %d right)", accuracy, correct, total))
    lines.append("")
    let cell = max(5, String(counts.joined().max() ?? 0).count + 1)
    func right(_ text: String) -> String { String(repeating: " ", count: max(0, cell - text.count)) + text }
    lines.append("confusion matrix (rows: true class, columns: predicted class)")
    lines.append(pad("", nameWidth + 4) + (0..<classCount).map { right(String($0)) }.joined())
    for (label, row) in counts.enumerated() {
      lines.append(
        pad(String(format: "%2d ", label) + " " + names[label], nameWidth + 4)
          + row.map { right(String($0)) }.joined())
    }
    return lines.joined(separator: "\n")
  }

  /// `{"classes": [...names], "counts": [[...]], "per_class": [{...}], "accuracy": x, "correct": n, "total": n}`;
  /// NaN scores are `null`.
  public func jsonObject(names: [String]) -> [String: Any] {
    func value(_ number: Double) -> Any { number.isNaN ? NSNull() : number }
    return [
      "classes": names, "counts": counts, "accuracy": value(accuracy), "correct": correct, "total": total,
      "per_class": allScores.map { score in
        [
          "class": score.label, "name": names[score.label], "support": score.support,
          "correct": score.truePositives, "accuracy": value(score.recall), "precision": value(score.precision),
          "recall": value(score.recall), "f1": value(score.f1),
        ] as [String: Any]
      },
    ]
  }
}
