/// A named tensor inside the flat parameter (and gradient) buffer, like one entry of a PyTorch state_dict.
public struct ParameterView: Sendable, Equatable, Codable {
  /// PyTorch nn.Sequential state_dict key, e.g. "0.weight".
  public var name: String
  /// Row-major shape, e.g. [256, 784] for a weight [out, in].
  public var shape: [Int]
  /// First element in the flat buffer.
  public var offset: Int
  /// Number of elements (product of `shape`).
  public var count: Int

  public init(name: String, shape: [Int], offset: Int, count: Int) {
    self.name = name
    self.shape = shape
    self.offset = offset
    self.count = count
  }
}
