import Foundation
import Testing
import Training

@testable import ddp_train

/// Every key a config file's `train:` section accepts is a `train` option: a file setting all of them parses.
@Suite struct ConfigKeysTests {
  /// A valid value for each kind of key (by what the key expects).
  static func sample(for key: String, expecting expected: String) -> String {
    switch key {
    case "dataset": return "synthetic"
    case "model": return "mlp:16"
    case "lr-scaling": return "sqrt"
    case "schedule": return "step:1,2"
    case "inject-fault": return "nan@0:5"
    case "optimizer": return "lars"
    case "momentum", "lr", "warmup-epochs", "weight-decay", "step-timeout", "trust-coefficient": return "0.5"
    default: break
    }
    if expected.contains("true or false") { return "true" }
    if expected.contains("path") || expected.contains("directory") { return "/tmp/somewhere" }
    return "3"
  }

  @Test func everyConfigKeyIsAnOption() throws {
    let lines = TrainOptions.configKeys.keys.sorted().map { key in
      "  \(key): \(Self.sample(for: key, expecting: TrainOptions.configKeys[key]!))"
    }
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("all-keys-\(UUID().uuidString).yaml").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try ("train:\n" + lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    let options = try ConfigFile.load(path: path).trainOptions()
    var configuration = Training.TrainingConfiguration()
    try options.apply(to: &configuration)
    #expect(configuration.batchSize == 3)
    #expect(configuration.dataset == .synthetic)
    #expect(configuration.resume == true)
    #expect(configuration.momentum == 0.5)
  }
}
