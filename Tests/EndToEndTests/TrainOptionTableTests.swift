import Foundation
import ScalingStudy
import Testing
import Training

@testable import ddp_train

/// `TrainOption.all` is the one declaration of the `train` options; these tests fail when the command line, the
/// config file, `TrainingConfiguration`, the agreement's names or the README's table disagree with it.
@Suite struct TrainOptionTableTests {
  /// A valid value for `option` that differs from its default.
  static func sample(for option: TrainOption) -> String {
    let defaults = TrainingConfiguration()
    switch option.name {
    case "dataset": return "npz"
    case "model": return "mlp:16"
    case "lr-scaling": return "sqrt"
    case "schedule": return "step:1,2"
    case "optimizer": return "lars"
    case "compress": return "bf16"
    case "batch-norm": return "sync"
    case "random-crop": return "3"
    case "normalize": return "0.3:0.4"
    case "betas": return "0.8,0.99"
    case "layout": return "nhwc"
    case "data-copies": return "rank"
    default: break
    }
    switch option.kind {
    case .flag: return option.value(in: defaults) == "true" ? "false" : "true"
    case .value:
      if option.expected.contains("path") { return "/tmp/somewhere" }
      if option.expected.contains("integer") { return "3" }
      return "0.5"
    }
  }

  /// `TrainingConfiguration` as plain JSON (camelCase property names), nested properties dotted.
  static func properties(_ configuration: TrainingConfiguration) throws -> [String: String] {
    let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(configuration)) as! [String: Any]
    var flat: [String: String] = [:]
    func add(_ value: Any, _ path: String) {
      if let nested = value as? [String: Any] {
        for (key, inner) in nested { add(inner, path + "." + key) }
      } else {
        flat[path] = "\(value)"
      }
    }
    for (key, value) in object { add(value, key) }
    return flat
  }

  /// Properties that are not options: fixed by the synthetic generator's 1×28×28 images and 10 classes.
  static let notOptions: Set<String> = ["synthetic.featureCount", "synthetic.classCount"]

  @Test func namesAreUniqueAndKebabCase() {
    let names = TrainOption.all.map(\.name)
    #expect(Set(names).count == names.count)
    for name in names {
      #expect(name.allSatisfy { $0.isLowercase || $0 == "-" }, "\(name)")
    }
  }

  /// Each option sets exactly the property it declares, and reads back the text it was given: the key path and
  /// the property name of a row cannot disagree.
  @Test func everyOptionSetsItsOwnProperty() throws {
    let defaults = TrainingConfiguration()
    let before = try Self.properties(defaults)
    for option in TrainOption.all {
      var configuration = defaults
      let text = Self.sample(for: option)
      try option.apply(text, to: &configuration)
      let after = try Self.properties(configuration)
      let changed = Set(after.keys).union(before.keys).filter { after[$0] != before[$0] }
      #expect(changed == [option.property], "\(option.flag) \(text) changed \(changed.sorted())")
      #expect(
        option.value(in: configuration) == text, "\(option.flag) reads back \(option.value(in: configuration) ?? "nil")"
      )
      // Written back as words and parsed again, the same configuration.
      var again = defaults
      try TrainOption.apply(TrainOption.parse(option.arguments(for: configuration)), to: &again)
      #expect(again == configuration, "\(option.flag): \(option.arguments(for: configuration))")
    }
  }

  /// Every property of the configuration (what state.json records) is some option's.
  @Test func everyPropertyIsAnOption() throws {
    let properties = Set(try Self.properties(TrainingConfiguration()).keys)
    let declared = Set(TrainOption.all.map(\.property))
    // Optional properties that default to nil do not appear in the JSON; they must still be declared.
    #expect(
      properties.subtracting(declared).subtracting(Self.notOptions).isEmpty, "\(properties.subtracting(declared))")
    let setEverything = try TrainOption.all.reduce(into: TrainingConfiguration()) { configuration, option in
      try option.apply(Self.sample(for: option), to: &configuration)
    }
    let all = Set(try Self.properties(setEverything).keys)
    #expect(all.subtracting(Self.notOptions) == declared, "\(all.symmetricDifference(declared))")
  }

  @Test func commandLineSyntax() throws {
    let parsed = try TrainOption.parse(["--lr=0.1", "--epochs", "-1", "--no-nesterov", "--resume"])
    #expect(parsed.map(\.option.name) == ["lr", "epochs", "nesterov", "resume"])
    #expect(parsed.map(\.text) == ["0.1", "-1", "false", "true"])
    #expect(throws: ConfigurationError.self) { try TrainOption.parse(["--batch-sise", "3"]) }
    do {
      _ = try TrainOption.parse(["--batch-sise", "3"])
    } catch {
      #expect(error.hint == "Did you mean --batch-size?")
    }
    #expect(throws: ConfigurationError.self) { try TrainOption.parse(["--nesterov=yes"]) }
    #expect(throws: ConfigurationError.self) { try TrainOption.parse(["--lr"]) }
    #expect(throws: ConfigurationError.self) { try TrainOption.parse(["64"]) }
  }

  /// A config file that sets every option parses, and sets what the same words on the command line set.
  @Test func everyOptionIsAConfigKey() throws {
    let lines = TrainOption.all.map { "  \($0.name): \(Self.sample(for: $0))" }
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("all-keys-\(UUID().uuidString).yaml").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try ("train:\n" + lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    var fromFile = TrainingConfiguration()
    try ConfigFile.load(path: path).applyTrainSection(to: &fromFile)
    var fromWords = TrainingConfiguration()
    let words = TrainOption.all.flatMap { option -> [String] in
      let text = Self.sample(for: option)
      return option.kind == .flag ? [text == "true" ? option.flag : "--no-" + option.name] : [option.flag, text]
    }
    try TrainOption.apply(TrainOption.parse(words), to: &fromWords)
    #expect(fromFile == fromWords)
    #expect(fromFile.batchSize == 3 && fromFile.dataset == .npz && fromFile.resume && fromFile.momentum == 0.5)
  }

  /// The start-up agreement names each setting by its option.
  @Test func agreementNamesAreOptions() throws {
    let names = Set(TrainOption.all.filter { !$0.rankZeroOnly }.map(\.flag))
    #expect(names.count == TrainOption.all.count - 2)
    #expect(!names.contains("--metrics") && !names.contains("--checkpoint-dir"))
  }

  /// The README's option table is `--config` and then exactly the table's rows, in its order.
  @Test func readmeTableMatches() throws {
    let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("README.md")
    let text = try String(contentsOf: readme, encoding: .utf8)
    let section = text.components(separatedBy: "## `train` options and defaults")[1]
      .components(separatedBy: "\n## ")[0]
    let rows = section.split(separator: "\n").map(String.init).filter { $0.hasPrefix("| `--") }
    #expect(rows.first?.hasPrefix("| `--config PATH` |") == true)
    let expected = TrainOption.markdownRows
    #expect(Array(rows.dropFirst()) == expected, "README rows should be:\n\(expected.joined(separator: "\n"))")
  }

  /// `--help` lists every option.
  @Test func helpListsEveryOption() {
    for option in TrainOption.all {
      #expect(TrainOptions.discussion.contains("  " + option.flag + " "), "\(option.flag)")
    }
  }

  /// `ddp-train scaling` takes exactly the options the table marks as passed on, and sets them on every training.
  @Test func scalingTakesThePassedOnOptions() throws {
    let passedOn = TrainOption.all.filter { $0.inStudy == .passedOn }
    var expected = StudySettings().training
    var words: [String] = []
    for option in passedOn {
      let text = Self.sample(for: option)
      try option.apply(text, to: &expected)
      words += option.kind == .flag ? [text == "true" ? option.flag : "--no-" + option.name] : [option.flag, text]
    }
    let settings = try ScalingCommand.parse(words).resolveSettings()
    #expect(settings.training == expected)
    // `--epochs` is also the study's own option (the accuracy runs' epochs), not the train option.
    for option in TrainOption.all where option.inStudy != .passedOn && option.name != "epochs" {
      let words = option.kind == .flag ? [option.flag] : [option.flag, Self.sample(for: option)]
      #expect(throws: ConfigurationError.self, "\(option.flag)") { try ScalingCommand.parse(words).resolveSettings() }
    }
  }
}
