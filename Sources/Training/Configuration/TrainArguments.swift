import Foundation

/// Parsing `train` options from words (the command line, or a config file's entries turned into words) against
/// `TrainOption.all`.
extension TrainOption {
  /// One option given a value: `--lr 0.1` is (lr, "0.1"), `--no-nesterov` is (nesterov, "false").
  public typealias Assignment = (option: TrainOption, text: String)

  /// Reads `--name VALUE`, `--name=VALUE`, `--flag` and `--no-flag` words. The word after a value option is its
  /// value even when it starts with a dash (`--epochs -1` reaches validation, which names the option). Options
  /// `accepting` rejects are unknown here (the scaling study takes only those it passes on).
  public static func parse(
    _ words: [String], accepting: (TrainOption) -> Bool = { _ in true }
  ) throws(ConfigurationError) -> [Assignment] {
    var assignments: [Assignment] = []
    var index = 0
    while index < words.count {
      let word = words[index]
      index += 1
      guard word.hasPrefix("--"), word.count > 2 else {
        throw ConfigurationError(
          option: word, expected: "an option like --batch-size 64", found: "an argument that is not an option")
      }
      var name = String(word.dropFirst(2))
      var inline: String?
      if let equals = name.firstIndex(of: "=") {
        inline = String(name[name.index(after: equals)...])
        name = String(name[..<equals])
      }
      if let option = named(name), accepting(option) {
        switch option.kind {
        case .flag:
          if let inline {
            throw ConfigurationError(option: "--" + name, expected: "no value (a flag)", found: "'\(inline)'")
          }
          assignments.append((option, "true"))
        case .value:
          if let inline {
            assignments.append((option, inline))
          } else if index < words.count {
            assignments.append((option, words[index]))
            index += 1
          } else {
            throw ConfigurationError(option: "--" + name, expected: option.expected, found: "nothing")
          }
        }
      } else if name.hasPrefix("no-"), let option = named(String(name.dropFirst(3))), option.kind == .flag,
        accepting(option), inline == nil
      {
        assignments.append((option, "false"))
      } else {
        throw unknownOption("--" + name, accepting: accepting)
      }
    }
    return assignments
  }

  /// Applies `assignments` in order (a later one wins) onto `configuration`.
  public static func apply(
    _ assignments: [Assignment], to configuration: inout TrainingConfiguration
  ) throws(ConfigurationError) {
    for (option, text) in assignments { try option.apply(text, to: &configuration) }
  }

  /// "no such option", with the nearest known name when one is close.
  static func unknownOption(_ word: String, accepting: (TrainOption) -> Bool) -> ConfigurationError {
    let name = String(word.drop { $0 == "-" })
    let nearest = all.filter(accepting).map { (option: $0, distance: editDistance($0.name, name)) }
      .min { $0.distance < $1.distance }
    let hint = nearest.flatMap { $0.distance <= 2 ? "Did you mean \($0.option.flag)?" : nil }
    return ConfigurationError(
      option: word, expected: "one of the options `--help` lists", found: "no such option", hint: hint)
  }

  /// Levenshtein distance: insertions, deletions and substitutions.
  static func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    var row = Array(0...b.count)
    for i in a.indices {
      var diagonal = row[0]
      row[0] = i + 1
      for j in b.indices {
        let above = row[j + 1]
        row[j + 1] = min(above + 1, row[j] + 1, diagonal + (a[i] == b[j] ? 0 : 1))
        diagonal = above
      }
    }
    return row[b.count]
  }

  /// The options as `--help` lists them: `--name VALUE (default X)` and the help, without markdown, wrapped to the
  /// 80 columns the argument parser keeps.
  public static func helpText(accepting: (TrainOption) -> Bool = { _ in true }) -> String {
    all.filter(accepting).map { option in
      let plain = { (text: String) in text.replacingOccurrences(of: "`", with: "") }
      let usage =
        option.kind == .flag ? "\(option.flag) / --no-\(option.name)" : "\(option.flag) \(option.placeholder)"
      return "  \(usage)  (default \(plain(option.defaultText)))\n" + wrap(plain(option.help), indent: "        ")
    }.joined(separator: "\n")
  }

  /// The README's option table rows, one per option: `| --name VALUE | default | help |`.
  public static var markdownRows: [String] {
    all.map { option in
      let usage =
        option.kind == .flag
        ? "`\(option.flag)` / `--no-\(option.name)`"
        : "`\(option.flag) \(option.placeholder.replacingOccurrences(of: "|", with: "\\|"))`"
      return "| \(usage) | \(option.defaultText) | \(option.help) |"
    }
  }

  static func wrap(_ text: String, indent: String, width: Int = 78) -> String {
    var lines: [String] = []
    var line = indent
    for word in text.split(separator: " ") {
      if line.count + word.count + 1 > width && line.count > indent.count {
        lines.append(line)
        line = indent
      }
      line += (line.count > indent.count ? " " : "") + word
    }
    lines.append(line)
    return lines.joined(separator: "\n")
  }
}
