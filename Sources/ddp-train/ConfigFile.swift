import Diagnostics
import Foundation
import Training
import Yams

/// A bad config file: one line naming the file, the key and what was expected. Exit status 2.
struct ConfigFileError: InputError {
  var path: String
  var key: String?
  var problem: String
  var description: String {
    "\(path): " + (key.map { "\($0): " } ?? "") + problem
  }
}

/// Where the job runs: mpirun's hosts and slots (the `cluster:` section).
struct ClusterSpec: Equatable {
  struct Host: Equatable {
    var name: String
    var slots: Int
  }
  var hosts: [Host]
  /// Extra arguments for mpirun, placed before the program.
  var mpirunArguments: [String]
  var worldSize: Int { hosts.reduce(0) { $0 + $1.slots } }
  var isLocalOnly: Bool {
    hosts.allSatisfy { ["localhost", "127.0.0.1", ProcessInfo.processInfo.hostName].contains($0.name) }
  }
}

/// `cluster.yaml`: a `cluster:` section (hosts and slots for mpirun) and a `train:` section whose keys are the
/// `train` options without their dashes. Unknown keys and wrong types are errors naming the key.
struct ConfigFile {
  var path: String
  var cluster: ClusterSpec?
  /// The `train:` section as (key, YAML scalar) pairs, in file order.
  var train: [(key: String, value: Node.Scalar)]

  static func load(path: String) throws(ConfigFileError) -> ConfigFile {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      let exists = FileManager.default.fileExists(atPath: path)
      throw ConfigFileError(
        path: path, key: nil,
        problem: exists ? "cannot be read as UTF-8 text" : "no such file; expected a YAML config like cluster.yaml")
    }
    let root: Node?
    do { root = try Yams.compose(yaml: text) } catch {
      throw ConfigFileError(path: path, key: nil, problem: "is not valid YAML: \(Self.oneLine(error))")
    }
    guard let root, case .mapping(let top) = root else {
      throw ConfigFileError(
        path: path, key: nil, problem: "expected a mapping with `cluster:` and/or `train:` sections")
    }
    var file = ConfigFile(path: path, cluster: nil, train: [])
    for (keyNode, value) in top {
      let key = keyNode.string ?? "\(keyNode)"
      switch key {
      case "cluster": file.cluster = try parseCluster(value, path: path)
      case "train": file.train = try parseTrain(value, path: path)
      default:
        throw ConfigFileError(path: path, key: key, problem: "unknown key; expected `cluster` or `train`")
      }
    }
    return file
  }

  private static func parseCluster(_ node: Node, path: String) throws(ConfigFileError) -> ClusterSpec {
    guard case .mapping(let mapping) = node else {
      throw ConfigFileError(path: path, key: "cluster", problem: "expected a mapping with `hosts:`")
    }
    var hosts: [ClusterSpec.Host]?
    var extra: [String] = []
    for (keyNode, value) in mapping {
      let key = keyNode.string ?? ""
      switch key {
      case "hosts":
        guard case .sequence(let sequence) = value, !sequence.isEmpty else {
          throw ConfigFileError(path: path, key: "cluster.hosts", problem: "expected a non-empty list of {name, slots}")
        }
        hosts = []
        for (index, entry) in sequence.enumerated() {
          let location = "cluster.hosts[\(index)]"
          guard case .mapping(let fields) = entry else {
            throw ConfigFileError(path: path, key: location, problem: "expected a mapping {name: HOST, slots: N}")
          }
          var name: String?
          var slots: Int?
          for (fieldNode, fieldValue) in fields {
            let field = fieldNode.string ?? ""
            switch field {
            case "name":
              guard case .scalar(let scalar) = fieldValue, !scalar.string.isEmpty else {
                throw ConfigFileError(path: path, key: location + ".name", problem: "expected a host name")
              }
              name = scalar.string
            case "slots":
              guard case .scalar(let scalar) = fieldValue, let count = Int(scalar.string) else {
                throw ConfigFileError(
                  path: path, key: location + ".slots", problem: "expected an integer, found \(describe(fieldValue))")
              }
              guard count > 0 else {
                throw ConfigFileError(
                  path: path, key: location + ".slots", problem: "expected a positive number of slots, found \(count)")
              }
              slots = count
            default:
              throw ConfigFileError(
                path: path, key: location + "." + field, problem: "unknown key; expected `name` or `slots`")
            }
          }
          guard let name, let slots else {
            throw ConfigFileError(path: path, key: location, problem: "needs both `name` and `slots`")
          }
          hosts?.append(.init(name: name, slots: slots))
        }
      case "mpirun-args":
        guard case .sequence(let sequence) = value else {
          throw ConfigFileError(path: path, key: "cluster.mpirun-args", problem: "expected a list of strings")
        }
        extra = try sequence.map { (item: Node) throws(ConfigFileError) -> String in
          guard case .scalar(let scalar) = item else {
            throw ConfigFileError(path: path, key: "cluster.mpirun-args", problem: "expected a list of strings")
          }
          return scalar.string
        }
      default:
        throw ConfigFileError(
          path: path, key: "cluster." + key, problem: "unknown key; expected `hosts` or `mpirun-args`")
      }
    }
    guard let hosts else {
      throw ConfigFileError(path: path, key: "cluster.hosts", problem: "missing; expected a list of {name, slots}")
    }
    return ClusterSpec(hosts: hosts, mpirunArguments: extra)
  }

  private static func parseTrain(_ node: Node, path: String) throws(ConfigFileError) -> [(
    key: String, value: Node.Scalar
  )] {
    guard case .mapping(let mapping) = node else {
      throw ConfigFileError(
        path: path, key: "train", problem: "expected a mapping of train options (batch-size: 64, ...)")
    }
    var pairs: [(key: String, value: Node.Scalar)] = []
    for (keyNode, value) in mapping {
      let key = keyNode.string ?? "\(keyNode)"
      guard let option = TrainOption.named(key) else {
        let known = TrainOption.all.map(\.name).sorted().joined(separator: ", ")
        throw ConfigFileError(path: path, key: "train." + key, problem: "unknown key; expected one of: \(known)")
      }
      guard case .scalar(let scalar) = value else {
        throw ConfigFileError(
          path: path, key: "train." + key, problem: "expected \(option.expected), found \(describe(value))")
      }
      pairs.append((key, scalar))
    }
    return pairs
  }

  /// The `train:` section laid over `configuration`, each key checked on its own so an error names it.
  func applyTrainSection(to configuration: inout TrainingConfiguration) throws(ConfigFileError) {
    for (key, scalar) in train {
      let option = TrainOption.named(key)!  // parseTrain admitted known keys only
      let found = "'\(scalar.string)'"
      func wrong(_ found: String) -> ConfigFileError {
        ConfigFileError(path: path, key: "train." + key, problem: "expected \(option.expected), found \(found)")
      }
      let text: String
      let plain = scalar.style == .plain
      switch option.kind {
      case .flag:
        switch scalar.string.lowercased() {
        case "true", "yes", "on": text = "true"
        case "false", "no", "off": text = "false"
        default: throw wrong(found)
        }
      case .value:
        if scalar.string.isEmpty || (plain && ["~", "null", "Null", "NULL"].contains(scalar.string)) {
          throw wrong("nothing")
        }
        // YAML's booleans are never a value option's value (`lr: yes` is a mistake, not the string "yes").
        if plain && ["true", "false", "yes", "no", "on", "off"].contains(scalar.string.lowercased()) {
          throw wrong(found)
        }
        text = scalar.string
      }
      do { try option.apply(text, to: &configuration) } catch { throw wrong(found) }
    }
  }

  static func describe(_ node: Node) -> String {
    switch node {
    case .scalar(let scalar): return "'\(scalar.string)'"
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .alias: return "an alias"
    }
  }

  static func oneLine(_ error: Error) -> String {
    "\(error)".split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
  }
}
