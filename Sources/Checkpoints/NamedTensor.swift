/// One tensor of a checkpoint file, row-major, named as in a PyTorch state_dict (`0.weight`): F32 (parameters,
/// gradients, running statistics: `values`) or I64 (a batch norm's num_batches_tracked: `integers`).
public struct NamedTensor: Equatable, Sendable {
  /// The element types a checkpoint holds, by their safetensors names.
  public enum DType: String, Sendable {
    case f32 = "F32"
    case i64 = "I64"

    var byteCount: Int { self == .f32 ? 4 : 8 }
  }

  public var name: String
  /// Dimensions, outermost first; the element count is their product (1 for a scalar, `[]`).
  public var shape: [Int]
  public var dtype: DType
  /// The elements of an F32 tensor (empty for I64).
  public var values: [Float]
  /// The elements of an I64 tensor (empty for F32).
  public var integers: [Int64]

  public init(name: String, shape: [Int], values: [Float]) {
    self.name = name
    self.shape = shape
    dtype = .f32
    self.values = values
    integers = []
  }

  public init(name: String, shape: [Int], integers: [Int64]) {
    self.name = name
    self.shape = shape
    dtype = .i64
    values = []
    self.integers = integers
  }

  /// Elements held, whichever the type.
  public var count: Int { dtype == .f32 ? values.count : integers.count }
}
