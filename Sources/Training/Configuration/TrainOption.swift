import Datasets
import Foundation
import Optimizers

/// One `train` option, declared once (in `TrainOption.all`): its name on the command line (`--batch-size`) and in
/// a config file's `train:` section (`batch-size:`), what it expects, its help, the `TrainingConfiguration` field it
/// sets (the key of `state.json`'s `configuration`), and how that field is read back as an argument. The command
/// line, the config file, the ranks' start-up agreement, the scaling study's argv, `train --help` and the README's
/// option table (by a test) all follow from the table.
public struct TrainOption: @unchecked Sendable {
  public enum Kind: Sendable {
    /// `--name VALUE` or `--name=VALUE`; the next word is the value even when it starts with a dash.
    case value
    /// `--name` / `--no-name`; `true` / `false` in a config file.
    case flag
  }
  /// How the scaling study treats the option.
  public enum InStudy: Sendable {
    /// `ddp-train scaling` accepts it and passes it on to every training.
    case passedOn
    /// The study sets it per run (batch, accumulation, lr policy, ...).
    case setPerRun
    /// Not a study setting (outputs, checkpoints, debugging).
    case no
  }

  /// Without dashes: `batch-size`.
  public let name: String
  /// The value's name in help and the README: `B` in `--batch-size B`; empty for flags.
  public let placeholder: String
  public let kind: Kind
  /// What a value must be, for error messages: "a positive integer".
  public let expected: String
  /// The default, as the README's table and `--help` show it.
  public let defaultText: String
  public let help: String
  /// The `TrainingConfiguration` property, dotted for nested ones (`synthetic.trainCount`).
  public let property: String
  /// Output locations only rank 0 opens; they may differ between ranks.
  public let rankZeroOnly: Bool
  public let inStudy: InStudy
  /// Sets the property from the option's text (flags get "true" or "false").
  let write: (inout TrainingConfiguration, String) throws(ConfigurationError) -> Void
  /// The property as the option's text; nil when unset (an optional that is nil).
  let read: (TrainingConfiguration) -> String?

  public var flag: String { "--" + name }

  /// Sets this option's property from `text`; the error names the option.
  public func apply(_ text: String, to configuration: inout TrainingConfiguration) throws(ConfigurationError) {
    try write(&configuration, text)
  }

  /// The property's value as this option's text, nil when unset.
  public func value(in configuration: TrainingConfiguration) -> String? { read(configuration) }

  /// The words that set this option to its value in `configuration` (`["--lr", "0.1"]`, `["--no-nesterov"]`).
  public func arguments(for configuration: TrainingConfiguration) -> [String] {
    guard let text = read(configuration) else { return [] }
    switch kind {
    case .value: return [flag, text]
    case .flag: return [text == "true" ? flag : "--no-" + name]
    }
  }

  /// The option called `name` (without dashes); nil for an unknown name.
  public static func named(_ name: String) -> TrainOption? { byName[name] }

  static let byName: [String: TrainOption] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

  /// Shortest round-tripping form of a number, without a trailing ".0": how values are written back as text.
  public static func format(_ value: Double) -> String {
    if value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
    return String(value)
  }

  /// The arguments that reproduce `configuration`: every option whose value differs from the default, plus those
  /// in `always`, in table order. Only options `including` accepts are considered.
  public static func arguments(
    for configuration: TrainingConfiguration, always: Set<String> = [], including: (TrainOption) -> Bool = { _ in true }
  ) -> [String] {
    let defaults = TrainingConfiguration()
    return all.filter(including).flatMap { option -> [String] in
      let value = option.read(configuration)
      guard always.contains(option.name) || value != option.read(defaults) else { return [] }
      return option.arguments(for: configuration)
    }
  }
}

// MARK: - Building table rows

extension TrainOption {
  typealias Path<Value> = WritableKeyPath<TrainingConfiguration, Value>

  /// A row whose value is parsed by `parse` (nil: not a valid value) and checked by `TrainingConfiguration.validate`.
  static func value<Value>(
    _ name: String, _ placeholder: String, _ path: Path<Value>, property: String, expected: String,
    default defaultText: String, help: String, rankZeroOnly: Bool = false, inStudy: InStudy,
    parse: @escaping (String) -> Value?, show: @escaping (Value) -> String?
  ) -> TrainOption {
    TrainOption(
      name: name, placeholder: placeholder, kind: .value, expected: expected, defaultText: defaultText, help: help,
      property: property, rankZeroOnly: rankZeroOnly, inStudy: inStudy,
      write: { (configuration, text) throws(ConfigurationError) in
        guard let value = parse(text) else {
          throw ConfigurationError(option: "--" + name, expected: expected, found: "'\(text)'")
        }
        configuration[keyPath: path] = value
      },
      read: { show($0[keyPath: path]) })
  }

  /// A number (or an optional one: unset until given), parsed and written back by its `OptionValue` conformance.
  static func number<Value: OptionValue>(
    _ name: String, _ placeholder: String, _ path: Path<Value>, property: String, expected: String? = nil,
    default defaultText: String, help: String, inStudy: InStudy
  ) -> TrainOption {
    value(
      name, placeholder, path, property: property, expected: expected ?? Value.expected, default: defaultText,
      help: help, inStudy: inStudy, parse: { Value(optionText: $0) }, show: { $0.optionText })
  }

  static func path(
    _ name: String, _ placeholder: String, _ path: Path<String?>, property: String, expected: String,
    default defaultText: String, help: String, rankZeroOnly: Bool = false, inStudy: InStudy
  ) -> TrainOption {
    value(
      name, placeholder, path, property: property, expected: expected, default: defaultText, help: help,
      rankZeroOnly: rankZeroOnly, inStudy: inStudy, parse: { $0.isEmpty ? nil : .some($0) }, show: { $0 })
  }

  static func choice<Choice: RawRepresentable & CaseIterable>(
    _ name: String, _ path: Path<Choice>, property: String, default defaultText: String, help: String,
    inStudy: InStudy
  ) -> TrainOption where Choice.RawValue == String {
    let names = Choice.allCases.map(\.rawValue)
    return value(
      name, names.joined(separator: "|"), path, property: property,
      expected: "one of " + names.joined(separator: ", "), default: defaultText, help: help, inStudy: inStudy,
      parse: { Choice(rawValue: $0) }, show: { $0.rawValue })
  }

  static func flag(
    _ name: String, _ path: Path<Bool>, property: String, default defaultText: String, help: String,
    inStudy: InStudy
  ) -> TrainOption {
    flagRow(
      name, property: property, default: defaultText, help: help, inStudy: inStudy,
      set: { $0[keyPath: path] = $1 }, show: { String($0[keyPath: path]) })
  }

  /// A flag whose default is decided from other settings: unset (nil) until `--name` or `--no-name` is given.
  static func flag(
    _ name: String, _ path: Path<Bool?>, property: String, default defaultText: String, help: String,
    inStudy: InStudy
  ) -> TrainOption {
    flagRow(
      name, property: property, default: defaultText, help: help, inStudy: inStudy,
      set: { $0[keyPath: path] = $1 }, show: { $0[keyPath: path].map { String($0) } })
  }

  /// The row both kinds of flag share: "true" or "false" in, `show`'s text (nil: unset) out.
  private static func flagRow(
    _ name: String, property: String, default defaultText: String, help: String, inStudy: InStudy,
    set: @escaping (inout TrainingConfiguration, Bool) -> Void, show: @escaping (TrainingConfiguration) -> String?
  ) -> TrainOption {
    TrainOption(
      name: name, placeholder: "", kind: .flag, expected: "true or false", defaultText: defaultText, help: help,
      property: property, rankZeroOnly: false, inStudy: inStudy,
      write: { (configuration, text) throws(ConfigurationError) in
        guard let value = Bool(text) else {
          throw ConfigurationError(option: "--" + name, expected: "true or false", found: "'\(text)'")
        }
        set(&configuration, value)
      },
      read: show)
  }
}

/// A value a number option holds: parsed from the option's text, written back as text (nil: unset).
protocol OptionValue {
  init?(optionText: String)
  var optionText: String? { get }
  /// What the text must be, for error messages.
  static var expected: String { get }
}

extension Int: OptionValue {
  init?(optionText: String) { self.init(optionText) }
  var optionText: String? { String(self) }
  static var expected: String { "an integer" }
}

extension UInt64: OptionValue {
  init?(optionText: String) { self.init(optionText) }
  var optionText: String? { String(self) }
  static var expected: String { "a non-negative integer" }
}

extension Double: OptionValue {
  init?(optionText: String) { self.init(optionText) }
  var optionText: String? { TrainOption.format(self) }
  static var expected: String { "a number" }
}

extension Optional: OptionValue where Wrapped: OptionValue {
  init?(optionText: String) {
    guard let value = Wrapped(optionText: optionText) else { return nil }
    self = .some(value)
  }
  var optionText: String? { self?.optionText }
  static var expected: String { Wrapped.expected }
}
