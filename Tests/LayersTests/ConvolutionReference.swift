import Foundation

@testable import Layers

/// Independent Double re-implementations of convolution, max pooling and whole `seq:` networks, written from the
/// definitions (direct loops over NCHW, no im2col, no shared code with the Layers module or the C kernels).
extension Reference {
  /// One side of a convolution's or pooling's output: ⌊(n + 2p − k)/s⌋ + 1.
  static func outputSide(_ n: Int, kernel: Int, stride: Int, padding: Int = 0) -> Int {
    (n + 2 * padding - kernel) / stride + 1
  }

  /// nn.Conv2d straight from the definition: x [batch, c, h, w], weight [o, c, k, k], bias [o] →
  /// y [batch, o, oh, ow], y[b, o, i, j] = bias[o] + Σ_{c, u, v} w[o, c, u, v] · x[b, c, i·s − p + u, j·s − p + v],
  /// where positions outside the input are zero.
  static func conv2d(
    _ x: [Double], batch: Int, channels: Int, height: Int, width: Int, weight: [Double], bias: [Double],
    outChannels: Int, kernel: Int, stride: Int, padding: Int
  ) -> [Double] {
    let oh = outputSide(height, kernel: kernel, stride: stride, padding: padding)
    let ow = outputSide(width, kernel: kernel, stride: stride, padding: padding)
    var y = [Double](repeating: 0, count: batch * outChannels * oh * ow)
    for b in 0..<batch {
      for o in 0..<outChannels {
        for i in 0..<oh {
          for j in 0..<ow {
            var sum = bias[o]
            for c in 0..<channels {
              for u in 0..<kernel {
                for v in 0..<kernel {
                  let row = i * stride - padding + u
                  let column = j * stride - padding + v
                  guard row >= 0, row < height, column >= 0, column < width else { continue }
                  let w = weight[((o * channels + c) * kernel + u) * kernel + v]
                  sum += w * x[((b * channels + c) * height + row) * width + column]
                }
              }
            }
            y[((b * outChannels + o) * oh + i) * ow + j] = sum
          }
        }
      }
    }
    return y
  }

  /// nn.MaxPool2d (no padding, floor mode) from the definition: each output is the maximum of its k×k window; the
  /// window's first maximum in row-major order is where its gradient goes (a NaN counts as larger than anything,
  /// as in PyTorch, so of several NaNs the last). argmax holds, per output, the index into its sample ([c, h, w] flattened).
  static func maxPool2d(
    _ x: [Double], batch: Int, channels: Int, height: Int, width: Int, kernel: Int, stride: Int
  ) -> (y: [Double], argmax: [Int]) {
    let oh = outputSide(height, kernel: kernel, stride: stride)
    let ow = outputSide(width, kernel: kernel, stride: stride)
    var y = [Double](repeating: 0, count: batch * channels * oh * ow)
    var argmax = [Int](repeating: -1, count: y.count)
    for b in 0..<batch {
      for c in 0..<channels {
        for i in 0..<oh {
          for j in 0..<ow {
            var best = -1
            var maximum = -Double.infinity
            for u in 0..<kernel {
              for v in 0..<kernel {
                let index = (c * height + i * stride + u) * width + j * stride + v
                let value = x[b * channels * height * width + index]
                if best < 0 || value > maximum || value.isNaN {
                  best = index
                  maximum = value
                }
              }
            }
            let out = ((b * channels + c) * oh + i) * ow + j
            y[out] = maximum
            argmax[out] = best
          }
        }
      }
    }
    return (y, argmax)
  }

  /// The logits of a `seq:` network on `batch` samples of `inputShape`; parameters laid out as PyTorch's
  /// state_dict (for each Linear or Conv2d in order: weight row-major, then bias). Shapes are worked out here, from
  /// the definitions, not taken from `ModelSpec`.
  static func logits(
    layers: [LayerSpec], inputShape: [Int], parameters: [Double], input: [Double], batch: Int
  ) -> [Double] {
    var shape = inputShape
    var activation = input
    var offset = 0
    func take(_ count: Int) -> [Double] {
      defer { offset += count }
      return Array(parameters[offset..<(offset + count)])
    }
    for layer in layers {
      switch layer {
      case .relu:
        activation = activation.map { max($0, 0) }
      case .flatten:
        shape = [shape.reduce(1, *)]
      case .linear(let out):
        let inFeatures = shape.reduce(1, *)
        let weight = take(out * inFeatures)
        let bias = take(out)
        var next = [Double](repeating: 0, count: batch * out)
        for b in 0..<batch {
          for o in 0..<out {
            var sum = bias[o]
            for j in 0..<inFeatures { sum += weight[o * inFeatures + j] * activation[b * inFeatures + j] }
            next[b * out + o] = sum
          }
        }
        activation = next
        shape = [out]
      case .conv2d(let out, let kernel, let stride, let padding):
        let weight = take(out * shape[0] * kernel * kernel)
        let bias = take(out)
        activation = conv2d(
          activation, batch: batch, channels: shape[0], height: shape[1], width: shape[2], weight: weight,
          bias: bias, outChannels: out, kernel: kernel, stride: stride, padding: padding)
        shape = [
          out, outputSide(shape[1], kernel: kernel, stride: stride, padding: padding),
          outputSide(shape[2], kernel: kernel, stride: stride, padding: padding),
        ]
      case .maxPool2d(let kernel, let stride):
        activation =
          maxPool2d(
            activation, batch: batch, channels: shape[0], height: shape[1], width: shape[2], kernel: kernel,
            stride: stride
          ).y
        shape = [
          shape[0], outputSide(shape[1], kernel: kernel, stride: stride),
          outputSide(shape[2], kernel: kernel, stride: stride),
        ]
      case .dropout:
        // The identity of evaluation; training's masks are DropoutTests' subject.
        break
      case .residual(let body):
        // y = body(x) + shortcut(x): the identity, or a 1×1 convolution of the body's stride and a batch norm.
        let bodyCounts = ModelSpec.counts(body, input: shape)
        let bodyOutput = logits(
          layers: body, inputShape: shape, parameters: take(bodyCounts.parameters), input: activation, batch: batch)
        let output = try! ModelSpec.outputShape(of: layer, input: shape)
        var shortcut = activation
        if output != shape {
          let stride = ResidualBlock.shortcutStride(from: shape, to: output)!
          let path: [LayerSpec] = [.conv2d(outChannels: output[0], kernel: 1, stride: stride, padding: 0), .batchNorm]
          shortcut = logits(
            layers: path, inputShape: shape,
            parameters: take(ModelSpec.counts(path, input: shape).parameters), input: activation, batch: batch)
        }
        activation = zip(bodyOutput, shortcut).map { $0 + $1 }
        shape = output
      case .globalAveragePool:
        let (channels, pixels) = (shape[0], shape[1] * shape[2])
        activation = (0..<(batch * channels)).map { row in
          (0..<pixels).reduce(0.0) { $0 + activation[row * pixels + $1] } / Double(pixels)
        }
        shape = [channels]
      case .batchNorm:
        // Training mode: the batch's statistics (BatchNormCase.reference).
        let theta = take(2 * shape[0])
        activation = BatchNormCase(shape: shape, batch: batch).reference(activation, theta).y
      }
    }
    precondition(offset == parameters.count, "the reference used \(offset) of \(parameters.count) parameters")
    return activation
  }

  /// Σ_i softmax cross-entropy of the network's logits.
  static func loss(
    layers: [LayerSpec], inputShape: [Int], parameters: [Double], input: [Double], labels: [Int], classes: Int
  ) -> Double {
    let z = logits(
      layers: layers, inputShape: inputShape, parameters: parameters, input: input, batch: labels.count)
    return crossEntropySum(logits: z, labels: labels, classes: classes)
  }

  /// Σ r ⊙ y: a loss whose gradient with respect to y is r.
  static func dot(_ r: [Double], _ y: [Double]) -> Double {
    precondition(r.count == y.count)
    return zip(r, y).reduce(0) { $0 + $1.0 * $1.1 }
  }
}

/// |actual − expected| ≤ tolerance · max(1, |expected|), elementwise, with a message naming the first failure.
func firstMismatch(_ actual: [Double], _ expected: [Double], tolerance: Double) -> String? {
  guard actual.count == expected.count else { return "\(actual.count) values, expected \(expected.count)" }
  for i in actual.indices where !(abs(actual[i] - expected[i]) <= tolerance * max(1, abs(expected[i]))) {
    return "[\(i)]: \(actual[i]), expected \(expected[i])"
  }
  return nil
}

/// The ranges, in the order given, are adjacent and descending and exactly cover `covered` (the first starts
/// at its upper end, the last ends at its lower one); nil when they do, else what is wrong.
func rangeProblem(_ ranges: [Range<Int>], cover covered: Range<Int>) -> String? {
  guard let first = ranges.first else { return "no ranges" }
  guard first.upperBound == covered.upperBound else { return "the first range \(first) does not end at \(covered)" }
  for (a, b) in zip(ranges, ranges.dropFirst()) where b.upperBound != a.lowerBound {
    return "\(b) does not end where \(a) starts"
  }
  if let empty = ranges.first(where: \.isEmpty) { return "empty range \(empty)" }
  guard ranges.last!.lowerBound == covered.lowerBound else {
    return "the last range \(ranges.last!) does not start at \(covered.lowerBound)"
  }
  return nil
}
