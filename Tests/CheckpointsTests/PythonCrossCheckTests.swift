import Foundation
import Testing

@testable import Checkpoints

private let pythonHasSafetensors = pythonCanImport("safetensors, numpy")
private let pythonHasTorch = pythonCanImport("safetensors.torch, torch")

/// Reads a safetensors file with Python's reference implementation and prints, per tensor in name order,
/// "name shape bits...", the bits as 8 hex digits; then the metadata as sorted JSON.
private let dumpScript = """
  import json, sys
  import numpy as np
  from safetensors import safe_open
  from safetensors.numpy import load_file
  tensors = load_file(sys.argv[1])
  for name in sorted(tensors):
      a = tensors[name]
      assert a.dtype == np.float32, a.dtype
      bits = a.reshape(-1).view(np.uint32)
      print(name, ",".join(map(str, a.shape)), " ".join("%08x" % b for b in bits))
  with safe_open(sys.argv[1], framework="np") as f:
      print(json.dumps(f.metadata(), sort_keys=True))
  """

@Suite struct PythonCrossCheckTests {
  @Test(
    .enabled(
      if: pythonHasSafetensors,
      "python3 cannot import safetensors and numpy (pip install safetensors numpy)"))
  func pythonReadsWhatWeWrite() throws {
    let tensors = [
      NamedTensor(name: "0.weight", shape: [3, 4], values: (0..<12).map { Float($0) * 0.37 - 2 }),
      NamedTensor(
        name: "0.bias", shape: [3],
        values: [-0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude]),
      NamedTensor(name: "scalar", shape: [], values: [42]),
    ]
    let metadata = ["model": "mlp 784-256-128-10", "quote\"": "é\n"]
    try withTemporaryDirectory { root in
      let path = root + "/model.safetensors"
      try Data(SafeTensors.encode(tensors, metadata: metadata)).write(
        to: URL(fileURLWithPath: path))
      let result = try runPython(dumpScript, [path])
      #expect(result.status == 0)
      let expected = tensors.sorted { $0.name < $1.name }.map { tensor in
        tensor.name + " " + tensor.shape.map(String.init).joined(separator: ",") + " "
          + tensor.values.map { hex8($0.bitPattern) }.joined(separator: " ")
      }
      let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false).map(
        String.init)
      #expect(Array(lines.prefix(tensors.count)) == expected)
      let printedMetadata =
        try JSONSerialization.jsonObject(with: Data(lines[tensors.count].utf8)) as? [String: String]
      #expect(printedMetadata == metadata)
    }
  }

  @Test(
    .enabled(
      if: pythonHasSafetensors,
      "python3 cannot import safetensors and numpy (pip install safetensors numpy)"))
  func weReadWhatPythonWrites() throws {
    let script = """
      import sys
      import numpy as np
      from safetensors.numpy import save_file
      save_file({
          "4.bias": np.array([1.5, -0.0], dtype=np.float32),
          "0.weight": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
          "empty": np.zeros((0, 2), dtype=np.float32),
      }, sys.argv[1], metadata={"format": "np", "k": "v"})
      """
    try withTemporaryDirectory { root in
      let path = root + "/python.safetensors"
      #expect(try runPython(script, [path]).status == 0)
      let decoded = try SafeTensors.decode(
        Array(try Data(contentsOf: URL(fileURLWithPath: path))), path: path)
      let byName = Dictionary(uniqueKeysWithValues: decoded.tensors.map { ($0.name, $0) })
      #expect(
        byName["0.weight"]
          == NamedTensor(name: "0.weight", shape: [2, 3], values: (0..<6).map { Float($0) / 7 }))
      #expect(
        byName["4.bias"]?.values.map(\.bitPattern) == [
          Float(1.5).bitPattern, Float(-0.0).bitPattern,
        ])
      #expect(byName["empty"] == NamedTensor(name: "empty", shape: [0, 2], values: []))
      #expect(decoded.tensors.count == 3)
      #expect(decoded.metadata == ["format": "np", "k": "v"])
    }
  }

  @Test(
    .enabled(
      if: pythonHasTorch, "python3 cannot import torch and safetensors.torch (not installed here)"))
  func torchLoadsTheModelIntoSequential() throws {
    let sizes = [784, 256, 128, 10]
    var tensors: [NamedTensor] = []
    for layer in 0..<3 {
      let (fanIn, fanOut) = (sizes[layer], sizes[layer + 1])
      tensors.append(
        NamedTensor(
          name: "\(2 * layer).weight", shape: [fanOut, fanIn],
          values: (0..<(fanOut * fanIn)).map { Float($0 % 97) / 97 }))
      tensors.append(
        NamedTensor(
          name: "\(2 * layer).bias", shape: [fanOut], values: (0..<fanOut).map { Float($0) }))
    }
    let script = """
      import sys, torch
      from safetensors.torch import load_file
      model = torch.nn.Sequential(
          torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(),
          torch.nn.Linear(128, 10))
      model.load_state_dict(load_file(sys.argv[1]))
      assert abs(model[0].weight[1, 2].item() - ((1 * 784 + 2) % 97) / 97) < 1e-7
      assert model[4].bias[9].item() == 9.0
      print("ok")
      """
    try withTemporaryDirectory { root in
      let path = root + "/model.safetensors"
      try Data(SafeTensors.encode(tensors, metadata: ["format": "pt"])).write(
        to: URL(fileURLWithPath: path))
      let result = try runPython(script, [path])
      #expect(result.status == 0)
      #expect(result.output == "ok\n")
    }
  }
}

private func hex8(_ value: UInt32) -> String {
  let digits = String(value, radix: 16)
  return String(repeating: "0", count: 8 - digits.count) + digits
}
