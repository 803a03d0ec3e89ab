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
    // `cnn` is a model now: on flat data it needs an image shape, and it takes no arguments.
    ("cnn", "the cnn needs image samples [channels, height, width], the data has 784 features"),
    ("cnn:3,3", "'cnn' takes no arguments"),
    ("rnn", "unknown model 'rnn'"),
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

@Suite struct LayerSpecTokenTests {
  @Test(arguments: [
    ("conv32k3p1", LayerSpec.conv2d(outChannels: 32, kernel: 3, stride: 1, padding: 1), "conv32k3p1"),
    ("conv8k5s2p2", .conv2d(outChannels: 8, kernel: 5, stride: 2, padding: 2), "conv8k5s2p2"),
    ("conv4k3", .conv2d(outChannels: 4, kernel: 3, stride: 1, padding: 0), "conv4k3"),
    ("conv4k3s1p0", .conv2d(outChannels: 4, kernel: 3, stride: 1, padding: 0), "conv4k3"),
    ("conv6k3s2", .conv2d(outChannels: 6, kernel: 3, stride: 2, padding: 0), "conv6k3s2"),
    ("CONV16K5P2", .conv2d(outChannels: 16, kernel: 5, stride: 1, padding: 2), "conv16k5p2"),
    ("pool2", .maxPool2d(kernel: 2, stride: 2), "pool2"),
    ("pool3s2", .maxPool2d(kernel: 3, stride: 2), "pool3s2"),
    ("pool2s2", .maxPool2d(kernel: 2, stride: 2), "pool2"),
    ("Pool3S1", .maxPool2d(kernel: 3, stride: 1), "pool3s1"),
    ("linear10", .linear(outFeatures: 10), "linear10"),
    ("LINEAR128", .linear(outFeatures: 128), "linear128"),
    ("relu", .relu, "relu"),
    ("ReLU", .relu, "relu"),
    ("flatten", .flatten, "flatten"),
    ("Flatten", .flatten, "flatten"),
  ])
  func parsesEveryTokenForm(text: String, layer: LayerSpec, token: String) {
    #expect(LayerSpec(token: Substring(text)) == layer)
    #expect(layer.token == token)
    #expect(LayerSpec(token: Substring(token)) == layer)
  }

  @Test(arguments: [
    "conv", "conv32", "conv32k", "conv0k3", "conv4k0", "conv4k3s0", "conv4p1k3", "conv4k3p1s2", "conv4k3k3",
    "conv-4k3", "conv4k3x", "pool", "pool0", "pool2s0", "pool2k2", "linear", "linear0", "linear-3", "linear1.5",
    "relu2", "flat", "dense10", "", "conv4 k3",
  ])
  func rejectsMalformedTokens(text: String) {
    #expect(LayerSpec(token: Substring(text)) == nil)
  }
}

@Suite struct ConvolutionalSpecTests {
  /// 500 samples per evaluation forward unless every layer's outputs for 500 would pass 2²¹ floats: the MLP keeps
  /// 500; the default CNN counts 2·25088 + 6272 + 2·12544 + 2·3136 + 2·128 + 10 = 88,074 floats a sample, so
  /// ⌊2²¹ / 88,074⌋ = 23.
  @Test func evaluationBatchBoundsTheActivations() throws {
    #expect(ModelSpec(layerSizes: [784, 256, 128, 10]).evaluationBatch == 500)
    #expect(try ModelSpec(parsing: "cnn", sampleShape: [1, 28, 28], classCount: 10).evaluationBatch == 23)
  }

  @Test func defaultCNN() throws {
    let spec = try ModelSpec(parsing: "cnn", sampleShape: [1, 28, 28], classCount: 10)
    #expect(spec.parameterCount == 421_642)
    #expect(spec.name == "cnn")
    #expect(spec.layerSizes == nil)
    #expect(spec.inputShape == [1, 28, 28] && spec.classCount == 10)
    #expect(
      spec.outputShapes == [
        [32, 28, 28], [32, 28, 28], [32, 14, 14], [64, 14, 14], [64, 14, 14], [64, 7, 7], [3136], [128], [128],
        [10],
      ])
    #expect(
      spec.description == "cnn conv32k3p1,relu,pool2,conv64k3p1,relu,pool2,flatten,linear128,relu,linear10 on 1x28x28")
    #expect(try ModelSpec(parsing: "CNN", sampleShape: [1, 28, 28], classCount: 10) == spec)
    // The same layers written out are the same spec, and named "cnn".
    let written = try ModelSpec(
      parsing: "seq:conv32k3p1,relu,pool2,conv64k3p1,relu,pool2,flatten,linear128,relu,linear10",
      sampleShape: [1, 28, 28], classCount: 10)
    #expect(written == spec && written.name == "cnn")
    // On other images it is still the cnn, with the classifier sized for them.
    let color = try ModelSpec(parsing: "cnn", sampleShape: [3, 32, 32], classCount: 7)
    #expect(color.name == "cnn" && color.outputShapes[6] == [64 * 8 * 8] && color.classCount == 7)
  }

  @Test(arguments: [
    "seq:conv8k5s2p2,relu,pool3s2,flatten,linear10",
    "seq:flatten,linear10",
    "seq:pool2,conv4k3,relu,flatten,linear32,relu,linear10",
    "seq:conv4k1,flatten,linear10",
  ])
  func sequenceRoundTripsThroughName(text: String) throws {
    let spec = try ModelSpec(parsing: text, sampleShape: [1, 28, 28], classCount: 10)
    #expect(spec.name == text)
    #expect(try ModelSpec(parsing: spec.name, sampleShape: [1, 28, 28], classCount: 10) == spec)
    #expect(spec.description == text + " on 1x28x28")
  }

  @Test func sequenceStartingWithLinearTakesFlatSamples() throws {
    let spec = try ModelSpec(parsing: "seq:linear64,relu,linear10", sampleShape: [1, 28, 28], classCount: 10)
    #expect(spec.inputShape == [784])
    #expect(spec.layerSizes == [784, 64, 10] && spec.name == "mlp:64")
    #expect(spec == ModelSpec(layerSizes: [784, 64, 10]))
  }

  @Test func shapesFollowTheFormulas() throws {
    let spec = try ModelSpec(
      parsing: "seq:conv8k5s2p2,relu,pool3s2,flatten,linear10", sampleShape: [3, 29, 30], classCount: 10)
    // (29 + 4 − 5)/2 + 1 = 15, (30 + 4 − 5)/2 + 1 = 15; pool (15 − 3)/2 + 1 = 7.
    #expect(spec.outputShapes == [[8, 15, 15], [8, 15, 15], [8, 7, 7], [392], [10]])
    #expect(spec.parameterCount == 8 * 3 * 25 + 8 + 10 * 392 + 10)
    #expect(spec.inputShapes == [[3, 29, 30], [8, 15, 15], [8, 15, 15], [8, 7, 7], [392]])
  }

  /// Every rejection is a ModelSpecError whose message quotes what was given and says what is wrong.
  @Test(arguments: [
    ("seq:conv4k3,relu,foo,flatten,linear10", [1, 28, 28], ["'foo' is not a layer"]),
    ("seq:conv4k3,,flatten,linear10", [1, 28, 28], ["an empty entry is not a layer"]),
    ("seq:", [1, 28, 28], ["'seq:' needs a list of layers"]),
    ("seq", [1, 28, 28], ["'seq:' needs a list of layers"]),
    (
      "seq:conv4k29,flatten,linear10", [1, 28, 28],
      ["layer 0 'conv4k29'", "29x29 kernel larger than its padded input 1x28x28"]
    ),
    (
      "seq:pool2,conv4k9p1,flatten,linear10", [1, 12, 12],
      ["layer 1 'conv4k9p1'", "9x9 kernel larger than its padded input 1x6x6"]
    ),
    (
      "seq:flatten,conv4k3,flatten,linear10", [1, 28, 28],
      ["layer 1 'conv4k3'", "needs an image [channels, height, width] as input, found 784"]
    ),
    (
      "seq:flatten,pool2,linear10", [1, 28, 28],
      ["layer 1 'pool2'", "needs an image [channels, height, width] as input, found 784"]
    ),
    (
      "seq:pool29,flatten,linear10", [1, 28, 28],
      ["layer 0 'pool29'", "29x29 window larger than its input 1x28x28"]
    ),
    (
      "seq:conv4k3,pool5,flatten,linear10", [2, 6, 7],
      ["layer 1 'pool5'", "5x5 window larger than its input 4x4x5"]
    ),
    ("seq:conv4k3,relu", [1, 28, 28], ["the last layer must be a linear one"]),
    ("seq:flatten,linear10,relu", [1, 28, 28], ["the last layer must be a linear one"]),
    ("seq:conv4k3,linear10", [1, 28, 28], []),  // Linear flattens: this one is fine (checked below)
    ("seq:flatten,linear7", [1, 28, 28], ["the last layer 'linear7' gives 7 values, but the data has 10 classes"]),
    ("seq:linear7", [784], ["the last layer 'linear7' gives 7 values, but the data has 10 classes"]),
    ("cnn", [784], ["the cnn needs image samples [channels, height, width], the data has 784 features"]),
    (
      "seq:conv4k3p3,flatten,linear10", [1, 28, 28],
      ["layer 0 'conv4k3p3'", "has padding 3, expected less than the kernel"]
    ),
    ("seq:conv4k3p5,flatten,linear10", [1, 28, 28], ["has padding 5, expected less than the kernel"]),
    ("seq:conv0k3,flatten,linear10", [1, 28, 28], ["'conv0k3' is not a layer"]),
    ("seq:conv4k0,flatten,linear10", [1, 28, 28], ["'conv4k0' is not a layer"]),
    ("seq:conv4k3s0,flatten,linear10", [1, 28, 28], ["'conv4k3s0' is not a layer"]),
    ("seq:pool0,flatten,linear10", [1, 28, 28], ["'pool0' is not a layer"]),
    ("seq:flatten,linear0,linear10", [1, 28, 28], ["'linear0' is not a layer"]),
    ("seq:flatten,linear10", [1, 28, 28], []),
  ])
  func rejectsWhatDoesNotFit(text: String, shape: [Int], problems: [String]) {
    do throws(ModelSpecError) {
      let spec = try ModelSpec(parsing: text, sampleShape: shape, classCount: 10)
      #expect(problems.isEmpty, "\(text) was accepted as \(spec)")
    } catch {
      let message = error.description
      #expect(!problems.isEmpty, "\(text): \(message)")
      #expect(error.given == text)
      #expect(message.contains("invalid --model '\(text)'") && message.contains("Expected 'mlp'"))
      for problem in problems { #expect(error.problem.contains(problem), "\(error.problem)") }
    }
  }

  @Test func checkSyntaxNeedsNoShapes() throws {
    for text in ["mlp", "mlp:64,32", "cnn", "CNN", "seq:conv4k29,flatten,linear3", "seq:relu"] {
      #expect(throws: Never.self, "\(text)") { try ModelSpec.checkSyntax(text) }
    }
    for (text, problem) in [
      ("seq:conv4k3,foo", "'foo' is not a layer"), ("cnn:2", "'cnn' takes no arguments"),
      ("vgg", "unknown model 'vgg'"), ("mlp:x", "'x' is not a whole number"), ("seq:", "needs a list"),
    ] {
      let error = #expect(throws: ModelSpecError.self, "\(text)") { try ModelSpec.checkSyntax(text) }
      #expect(error?.given == text && error?.problem.contains(problem) == true, "\(String(describing: error))")
    }
  }

  @Test func codableKeepsTheOldMLPFormatAndRoundTripsCNNs() throws {
    let mlp = try ModelSpec(parsing: "mlp", inputSize: 784, classCount: 10)
    let data = try JSONEncoder().encode(mlp)
    #expect(String(decoding: data, as: UTF8.self) == #"{"layerSizes":[784,256,128,10]}"#)
    #expect(try JSONDecoder().decode(ModelSpec.self, from: data) == mlp)
    // A checkpoint's snake-case encoder.
    let snake = JSONEncoder()
    snake.keyEncodingStrategy = .convertToSnakeCase
    #expect(String(decoding: try snake.encode(mlp), as: UTF8.self) == #"{"layer_sizes":[784,256,128,10]}"#)

    for (text, shape) in [
      ("cnn", [1, 28, 28]), ("seq:conv8k5s2p2,relu,pool3s2,flatten,linear10", [3, 29, 30]),
      ("seq:flatten,linear10", [2, 3, 4]),
    ] {
      let spec = try ModelSpec(parsing: text, sampleShape: shape, classCount: 10)
      let encoded = try JSONEncoder().encode(spec)
      let object = try #require(try JSONSerialization.jsonObject(with: encoded) as? [String: Any])
      #expect(Set(object.keys) == ["layers", "inputShape"])
      #expect(object["layers"] as? String == "seq:" + spec.layers.map(\.token).joined(separator: ","))
      #expect(object["inputShape"] as? [Int] == shape)
      #expect(try JSONDecoder().decode(ModelSpec.self, from: encoded) == spec)
      let decoder = JSONDecoder()
      decoder.keyDecodingStrategy = .convertFromSnakeCase
      #expect(try decoder.decode(ModelSpec.self, from: try snake.encode(spec)) == spec)
    }
  }

  @Test(arguments: [
    #"{"layers":"seq:conv4k29,flatten,linear10","inputShape":[1,28,28]}"#,
    #"{"layers":"mlp:64","inputShape":[784]}"#,
    #"{"layers":"seq:flatten,linear10","inputShape":[]}"#,
    #"{"layers":"seq:flatten,linear10","inputShape":[0,3]}"#,
    #"{"layerSizes":[784]}"#,
    #"{"layerSizes":[784,0,10]}"#,
    #"{"inputShape":[1,28,28]}"#,
  ])
  func decodingRejectsBadSpecs(json: String) {
    #expect(throws: DecodingError.self) { try JSONDecoder().decode(ModelSpec.self, from: Data(json.utf8)) }
  }
}
