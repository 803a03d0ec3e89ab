import Foundation
import Testing

@testable import Layers

@Suite struct ModelSpecTests {
  @Test(arguments: [
    ("mlp", [784, 256, 128, 10]),
    ("mlp:512,256,64", [784, 512, 256, 64, 10]),
    ("mlp:32", [784, 32, 10]),
    ("mlp:", [784, 10]),
    ("MLP: 64, 32", [784, 64, 32, 10]),
  ])
  func parsesGoodForms(text: String, sizes: [Int]) throws {
    let spec = try ModelSpec(parsing: text, inputSize: 784, classCount: 10)
    #expect(spec.layerSizes == sizes)
    #expect(try ModelSpec(parsing: spec.name, inputSize: 784, classCount: 10) == spec)
  }

  @Test func namesAndDescription() throws {
    let spec = try ModelSpec(parsing: "mlp", inputSize: 784, classCount: 10)
    #expect(spec.name == "mlp:256,128")
    #expect(spec.description == "mlp 784-256-128-10")
    #expect(ModelSpec(layerSizes: [4, 3]).name == "mlp:")
    #expect(spec.parameterCount == 235_146)
    #expect(ModelSpec(layerSizes: [5, 4, 3, 3]).parameterCount == 24 + 15 + 12)
    let coded = try JSONDecoder().decode(ModelSpec.self, from: JSONEncoder().encode(spec))
    #expect(coded == spec)
  }

  @Test(arguments: [
    ("mlp:abc", "'abc' is not a whole number"),
    ("mlp:0", "hidden size 0 must be positive"),
    ("mlp:256,-5", "hidden size -5 must be positive"),
    ("mlp:256,,128", "an empty entry is not a whole number"),
    ("cnn", "unknown model 'cnn'"),
    ("cnn:3,3", "unknown model 'cnn'"),
    ("", "unknown model ''"),
  ])
  func rejectsBadForms(text: String, problem: String) {
    #expect {
      try ModelSpec(parsing: text, inputSize: 784, classCount: 10)
    } throws: { error in
      let message = String(describing: error)
      return message.contains("--model") && message.contains("'\(text)'")
        && message.contains(problem)
        && message.contains("Expected 'mlp'")
    }
  }
}
