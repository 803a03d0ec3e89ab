import ArgumentParser
import Foundation
import ScalingStudy
import Training

/// `ddp-train launch`: turns `cluster.yaml` into the mpirun command, prints it, runs it, and exits with its status.
struct LaunchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "launch",
    abstract: "Run the job a cluster.yaml describes through mpirun.",
    discussion: """
      K = the sum of the hosts' slots. One host named localhost runs locally (with --oversubscribe when K exceeds
      the cores); several hosts get a hostfile. Arguments after `--` are passed to every rank's `train`.
      """)

  @Option(help: "The cluster and training configuration.")
  var config: String = "cluster.yaml"
  @Flag(help: "Print the mpirun command without running it.")
  var dryRun = false
  @Option(help: "The mpirun to use.")
  var mpirun: String = "mpirun"
  @Argument(parsing: .postTerminator, help: "Extra train options for every rank (after --).")
  var trainArguments: [String] = []

  func run() throws {
    let file = try ConfigFile.load(path: config)
    var checked = TrainingConfiguration()
    try file.applyTrainSection(to: &checked)  // report a bad train: section now, not on every rank
    guard let cluster = file.cluster else {
      throw ConfigFileError(
        path: config, key: "cluster", problem: "missing; launch needs `cluster: {hosts: [{name, slots}]}`")
    }
    var mpirunCommand = MPIRunCommand(
      mpirun: mpirun, ranks: cluster.worldSize, cores: ProcessInfo.processInfo.activeProcessorCount,
      isRoot: getuid() == 0)
    mpirunCommand.local = cluster.isLocalOnly
    mpirunCommand.mpirunArguments = cluster.mpirunArguments
    var hostfile: String?
    if !cluster.isLocalOnly {
      let path = NSTemporaryDirectory() + "ddp-train-hostfile-\(getpid())"
      let lines = cluster.hosts.map { "\($0.name) slots=\($0.slots)" }.joined(separator: "\n") + "\n"
      if !dryRun { try lines.write(toFile: path, atomically: true, encoding: .utf8) }
      mpirunCommand.hostfile = path
      hostfile = path
    }
    // This very binary, also when it was found through PATH (argv[0] is then a bare name).
    let executable =
      (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
      ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    let configPath = URL(fileURLWithPath: config).standardizedFileURL.path
    let command = mpirunCommand.words(program: [executable, "train", "--config", configPath] + trainArguments)

    print("ddp-train launch: " + command.map(Self.shellQuoted).joined(separator: " "))
    fflush(nil)
    guard !dryRun else { return }
    defer { if let hostfile { unlink(hostfile) } }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    do { try process.run() } catch {
      throw ConfigFileError(
        path: config, key: nil, problem: "could not start \(mpirun): \(error). Is openmpi-bin installed?")
    }
    // Pass Ctrl-C and termination on to mpirun, which tears the ranks down.
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let forward: [DispatchSourceSignal] = [SIGINT, SIGTERM].map { signalNumber in
      let source = DispatchSource.makeSignalSource(signal: signalNumber)
      source.setEventHandler { process.interrupt() }
      source.resume()
      return source
    }
    process.waitUntilExit()
    _ = forward
    if process.terminationStatus != 0 { throw ExitCode(process.terminationStatus) }
  }

  static func shellQuoted(_ word: String) -> String {
    let safe = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
    if !word.isEmpty && word.unicodeScalars.allSatisfy(safe.contains) { return word }
    return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
  }
}
