import Datasets

/// The names of a dataset's classes, as people call them: Fashion-MNIST's ten garments (in label order, as the
/// dataset defines them), the digits for MNIST, `class k` for synthetic data.
public enum ClassNames {
  public static let fashionMNIST = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
  ]

  /// `count` names for `kind` (a dataset with more classes than its usual names gets `class k` for the rest).
  public static func names(for kind: DatasetKind, count: Int) -> [String] {
    (0..<count).map { label in
      switch kind {
      case .fashionMNIST where label < fashionMNIST.count: return fashionMNIST[label]
      case .mnist where label < 10: return String(label)
      default: return "class \(label)"
      }
    }
  }
}
