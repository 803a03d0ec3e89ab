import Layers
import Tensors
import Testing

/// A layer on its own, bound to buffers of this harness: its parameters and gradients start at `offset` in
/// buffers with `offset` elements before them and `guardCount` after, so that writes outside the layer's own
/// elements show, and the ranges `backward` reports are absolute as in a model.
final class LayerHarness {
  let layer: Layer
  let offset: Int
  let guardCount = 3
  let parameters: FloatBuffer
  let gradients: FloatBuffer
  static let guardValue: Float = 1234.5

  init(_ layer: Layer, offset: Int = 0, seed: UInt64 = 1) {
    self.layer = layer
    self.offset = offset
    parameters = FloatBuffer(count: offset + layer.parameterCount + guardCount)
    gradients = FloatBuffer(count: offset + layer.parameterCount + guardCount)
    for i in 0..<parameters.count {
      parameters[i] = Self.guardValue
      gradients[i] = Self.guardValue
    }
    let has = layer.parameterCount > 0
    layer.bind(
      parameters: has ? parameters.pointer + offset : nil, gradients: has ? gradients.pointer + offset : nil,
      offset: offset, index: 0)
    if has {
      parameterValues = Reference.randomFloats(layer.parameterCount, seed: seed)
      gradientValues = [Float](repeating: 0, count: layer.parameterCount)
    }
  }

  /// The layer's own elements of `parameters`.
  var parameterValues: [Float] {
    get { Array(parameters.array[offset..<(offset + layer.parameterCount)]) }
    set {
      precondition(newValue.count == layer.parameterCount)
      for (i, value) in newValue.enumerated() { parameters[offset + i] = value }
    }
  }

  /// The layer's own elements of `gradients`.
  var gradientValues: [Float] {
    get { Array(gradients.array[offset..<(offset + layer.parameterCount)]) }
    set {
      precondition(newValue.count == layer.parameterCount)
      for (i, value) in newValue.enumerated() { gradients[offset + i] = value }
    }
  }

  /// Whether every element outside the layer's own still holds the guard value.
  var guardsIntact: Bool {
    let outside = Array(0..<offset) + Array((offset + layer.parameterCount)..<parameters.count)
    return outside.allSatisfy { parameters[$0] == Self.guardValue && gradients[$0] == Self.guardValue }
  }

  /// y for `batch` samples (a buffer of NaNs beforehand, so that anything not written shows).
  func forward(_ x: [Float], batch: Int) -> [Float] {
    precondition(x.count == batch * layer.inputCount)
    let count = batch * layer.outputCount
    var y = [Float](repeating: .nan, count: count) + [Float](repeating: Self.guardValue, count: Self.trailingGuard)
    x.withUnsafeBufferPointer { xs in
      y.withUnsafeMutableBufferPointer { ys in layer.forward(xs.baseAddress!, into: ys.baseAddress!, batch: batch) }
    }
    Self.checkTrailingGuard(y, count: count, "forward's y")
    return Array(y[..<count])
  }

  /// Elements after an output buffer that a layer must leave alone (more than a 16-float vector).
  static let trailingGuard = 40

  static func checkTrailingGuard(_ buffer: [Float], count: Int, _ what: String) {
    if buffer[count...].contains(where: { $0 != guardValue }) {
      Issue.record("the layer wrote past the end of the \(what)")
    }
  }

  /// The backward for dy; dx (NaNs beforehand) when `wantsInputGradient`, and the ranges reported.
  func backward(
    x: [Float], y: [Float], dy: [Float], batch: Int, wantsInputGradient: Bool = true, rangeElements: Int = .max
  ) -> (dx: [Float]?, ranges: [Range<Int>]) {
    precondition(dy.count == batch * layer.outputCount && y.count == dy.count)
    var dyCopy = dy
    let count = batch * layer.inputCount
    var dx = [Float](repeating: .nan, count: count) + [Float](repeating: Self.guardValue, count: Self.trailingGuard)
    var ranges: [Range<Int>] = []
    x.withUnsafeBufferPointer { xs in
      y.withUnsafeBufferPointer { ys in
        dyCopy.withUnsafeMutableBufferPointer { dys in
          dx.withUnsafeMutableBufferPointer { dxs in
            layer.backward(
              x: xs.baseAddress!, y: ys.baseAddress!, dy: dys.baseAddress!,
              dx: wantsInputGradient ? dxs.baseAddress! : nil, batch: batch, rangeElements: rangeElements
            ) { ranges.append($0) }
          }
        }
      }
    }
    Self.checkTrailingGuard(dx, count: count, "backward's dx")
    return (wantsInputGradient ? Array(dx[..<count]) : nil, ranges)
  }
}

extension Array where Element == Float {
  var doubles: [Double] { map(Double.init) }
}
