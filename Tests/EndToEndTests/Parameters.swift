import Checkpoints
import Foundation
import TestSupport
import Testing

/// The final model of a run: the newest checkpoint's tensors, flattened in file order.
func finalParameters(in checkpointDirectory: URL) throws -> [Float] {
  let directory = CheckpointDirectory(path: checkpointDirectory.path)
  guard let newest = try directory.list().first else {
    Issue.record("no checkpoint in \(checkpointDirectory.path)")
    return []
  }
  let bytes = try directory.read(CheckpointDirectory.modelFile, of: newest)
  return try SafeTensors.decode(bytes, path: newest.path).tensors.flatMap(\.values)
}

/// max|a − b| / max|b|, the relative distance of two parameter vectors.
func relativeDistance(_ a: [Float], _ b: [Float]) -> Double {
  precondition(a.count == b.count)
  var difference = 0.0
  var scale = 0.0
  for index in a.indices {
    difference = max(difference, abs(Double(a[index]) - Double(b[index])))
    scale = max(scale, abs(Double(b[index])))
  }
  return difference / max(scale, 1e-30)
}

/// nil when `a` and `b` are bitwise identical; otherwise how many elements differ and the first of them (a short
/// message, where comparing the arrays themselves would print hundreds of thousands of numbers).
func bitwiseDifference(_ a: [Float], _ b: [Float]) -> String? {
  guard a.count == b.count else { return "sizes differ: \(a.count) vs \(b.count)" }
  let differing = a.indices.filter { a[$0].bitPattern != b[$0].bitPattern }
  guard let first = differing.first else { return nil }
  return "\(differing.count) of \(a.count) elements differ; first at \(first): \(a[first]) vs \(b[first])"
}
