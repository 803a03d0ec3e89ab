import Foundation
import TestSupport

/// The one-machine cluster of `launch/cluster`, for tests: hosts made as network namespaces with their own
/// hostname and /dev/shm, removed by `down` (also when a test fails: callers `defer` it).
final class NamespaceCluster {
  static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("launch/cluster").path

  /// Whether namespace hosts can be made here: root, iproute2 and util-linux, and a probe cluster that comes up.
  static let available: Bool = {
    guard getuid() == 0,
      FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
        || FileManager.default.isExecutableFile(atPath: "/sbin/ip")
        || FileManager.default.isExecutableFile(atPath: "/usr/bin/ip")
    else { return false }
    guard let probe = try? NamespaceCluster(hosts: 1, slots: 1) else { return false }
    probe.down()
    return true
  }()
  static let unavailableReason =
    "needs root, iproute2 and util-linux to make namespace hosts (launch/cluster up); not available here"

  let name: String
  let hosts: [String]
  let slots: Int
  /// The mpirun arguments the hosts need (agent, routing, interfaces), from `launch/cluster mpirun-args`.
  let mpirunArguments: [String]
  let stateDirectory: String

  /// A cluster with a name and subnet of this process's own, so a developer's `ddpt` cluster is never touched.
  init(hosts count: Int, slots: Int) throws {
    let tag = Int(getpid()) % 200 + 20
    name = "dte\(tag)"
    self.slots = slots
    hosts = (1...count).map { "dte\(tag)-h\($0)" }
    _ = Self.shell([Self.script, "down", "--name", name])
    let up = Self.shell([
      Self.script, "up", "--name", name, "--hosts", String(count), "--slots", String(slots), "--subnet",
      "10.214.\(tag)",
    ])
    guard up.status == 0 else {
      throw NSError(domain: "NamespaceCluster", code: Int(up.status), userInfo: [NSLocalizedDescriptionKey: up.output])
    }
    mpirunArguments = Self.shell([Self.script, "mpirun-args", "--name", name]).output.split(separator: "\n").map(
      String.init)
    stateDirectory = Self.shell([Self.script, "where", "--name", name]).output.trimmingCharacters(
      in: .whitespacesAndNewlines)
  }

  func down() { _ = Self.shell([Self.script, "down", "--name", name]) }

  var hostfile: String { stateDirectory + "/\(name).hostfile" }
  /// A cluster.yaml `cluster:` section for these hosts (add a `train:` section to launch it).
  var yaml: String { (try? String(contentsOfFile: stateDirectory + "/\(name).yaml", encoding: .utf8)) ?? "" }

  /// `mpirun -np ranks --hostfile ... ddp-train arguments...` across the hosts.
  func mpirun(
    ranks: Int, _ arguments: [String], timeout: Double = 120, onHost: String? = nil,
    during: (@Sendable (pid_t) -> Void)? = nil
  ) throws -> DDPTrainProcess.Result {
    try mpirun(
      ranks: ranks, program: DDPTrainProcess.binary, arguments, timeout: timeout, onHost: onHost, during: during)
  }

  /// `mpirun -np ranks --hostfile ... [mpirunOptions] program arguments...` across the hosts: any program, as each
  /// rank. `mpirunOptions` go to mpirun itself (`-x NAME=VALUE` gives every rank, on every host, a variable).
  /// mpirun runs on this machine, outside the hosts, or with `onHost` inside one of them (as on a real cluster,
  /// where it runs on the first node: that host's ranks are then its children).
  func mpirun(
    ranks: Int, program: String, _ arguments: [String], timeout: Double = 120, mpirunOptions: [String] = [],
    onHost: String? = nil, during: (@Sendable (pid_t) -> Void)? = nil
  ) throws -> DDPTrainProcess.Result {
    let command =
      (onHost.map { [Self.script, "exec", $0] } ?? [])
      + [
        "mpirun", "-np", String(ranks), "--hostfile", hostfile, "--timeout", String(Int(timeout)), "--mca",
        "odls_base_sigkill_timeout", "0",
      ] + mpirunArguments + mpirunOptions + [program] + arguments
    return try DDPTrainProcess.execute(command, timeout: timeout + 10, directory: nil, during: during)
  }

  /// Runs `command` inside `host` (its mounts, hostname and network).
  @discardableResult
  func exec(_ host: String, _ command: [String]) -> (status: Int32, output: String) {
    Self.shell([Self.script, "exec", host] + command)
  }

  func link(_ host: String, up: Bool) { _ = Self.shell([Self.script, "link", host, up ? "up" : "down"]) }

  /// The processes running inside `host`, with their command names.
  func processes(on host: String) -> [(pid: pid_t, name: String)] {
    Self.shell([Self.script, "pids", host]).output.split(separator: "\n").compactMap { line in
      guard let pid = pid_t(line) else { return nil }
      let name = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(
        in: .whitespacesAndNewlines)
      return name.map { (pid, $0) }
    }
  }

  /// Runs `command` to its end (at most 60 s), through the same runner as the trainings: output through files (the
  /// hosts' holder processes outlive the command, and a pipe would wait for them), signals unblocked.
  /// SIGKILLs every process named `name` inside `host`.
  func killAll(named name: String, on host: String) {
    for process in processes(on: host) where process.name == name { kill(process.pid, SIGKILL) }
  }

  static func shell(_ command: [String]) -> (status: Int32, output: String) {
    guard let result = try? DDPTrainProcess.execute(command, timeout: 60, directory: nil) else {
      return (127, "could not run \(command[0])")
    }
    return (result.timedOut ? 124 : result.status, result.stdout + result.stderr)
  }
}
