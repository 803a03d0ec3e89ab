/// One F32 tensor of a checkpoint file, row-major, named as in a PyTorch state_dict (`0.weight`).
public struct NamedTensor: Equatable, Sendable {
  public var name: String
  /// Dimensions, outermost first; `values.count` is their product (1 for a scalar, `[]`).
  public var shape: [Int]
  public var values: [Float]

  public init(name: String, shape: [Int], values: [Float]) {
    self.name = name
    self.shape = shape
    self.values = values
  }
}
