/// The architecture of an MLP: layer widths from the input through the hidden layers to the classes.
public struct ModelSpec: Codable, Equatable, Sendable, CustomStringConvertible {
  /// [input, hidden..., classes], e.g. [784, 256, 128, 10]; every entry > 0, at least two entries.
  public var layerSizes: [Int]

  /// The hidden widths of the bare `--model mlp`.
  public static let defaultHiddenSizes = [256, 128]

  public init(layerSizes: [Int]) {
    precondition(
      layerSizes.count >= 2, "ModelSpec needs an input and a class count, got \(layerSizes)")
    precondition(
      layerSizes.allSatisfy { $0 > 0 }, "ModelSpec layer sizes must be positive, got \(layerSizes)")
    self.layerSizes = layerSizes
  }

  /// Parses the `--model` value: "mlp" (hidden 256,128) or "mlp:512,256,64" (hidden sizes;
  /// "mlp:" alone = no hidden layer, a linear classifier). The input and class counts come from the dataset.
  public init(parsing text: String, inputSize: Int, classCount: Int) throws(ModelSpecError) {
    precondition(inputSize > 0 && classCount > 0, "dataset sizes must be positive")
    let trimmed = text.filter { $0 != " " }
    let family: Substring
    let hiddenText: Substring?
    if let colon = trimmed.firstIndex(of: ":") {
      family = trimmed[..<colon]
      hiddenText = trimmed[trimmed.index(after: colon)...]
    } else {
      family = trimmed[...]
      hiddenText = nil
    }
    guard family.lowercased() == "mlp" else {
      throw ModelSpecError(
        given: text, problem: "unknown model '\(family)'; the only model is 'mlp'")
    }
    var hidden: [Int] = []
    if let hiddenText {
      if !hiddenText.isEmpty {
        for item in hiddenText.split(separator: ",", omittingEmptySubsequences: false) {
          guard let size = Int(item) else {
            let shown = item.isEmpty ? "an empty entry" : "'\(item)'"
            throw ModelSpecError(given: text, problem: "\(shown) is not a whole number")
          }
          guard size > 0 else {
            throw ModelSpecError(given: text, problem: "hidden size \(size) must be positive")
          }
          hidden.append(size)
        }
      }
    } else {
      hidden = Self.defaultHiddenSizes
    }
    self.init(layerSizes: [inputSize] + hidden + [classCount])
  }

  /// The `--model` value that parses back to this spec (given the same dataset), e.g. "mlp:256,128";
  /// "mlp:" when there is no hidden layer.
  public var name: String {
    "mlp:" + hiddenSizes.map(String.init).joined(separator: ",")
  }

  /// "mlp 784-256-128-10".
  public var description: String {
    "mlp " + layerSizes.map(String.init).joined(separator: "-")
  }

  public var inputSize: Int { layerSizes[0] }
  public var classCount: Int { layerSizes[layerSizes.count - 1] }
  public var hiddenSizes: [Int] { Array(layerSizes.dropFirst().dropLast()) }
  /// Number of Linear layers (= layerSizes.count − 1).
  public var linearLayerCount: Int { layerSizes.count - 1 }

  /// Σ over Linear layers of out·in + out.
  public var parameterCount: Int {
    zip(layerSizes, layerSizes.dropFirst()).reduce(0) { $0 + $1.1 * $1.0 + $1.1 }
  }
}

/// A `--model` value that does not parse; the message says what was given and what is expected.
public struct ModelSpecError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The text passed to `--model`.
  public var given: String
  /// What is wrong with it.
  public var problem: String

  public init(given: String, problem: String) {
    self.given = given
    self.problem = problem
  }

  public var description: String {
    "invalid --model '\(given)': \(problem). Expected 'mlp' (hidden layers 256,128) or 'mlp:H1,H2,...' "
      + "with positive hidden sizes, e.g. 'mlp:512,256' ('mlp:' alone for no hidden layer)."
  }
}
