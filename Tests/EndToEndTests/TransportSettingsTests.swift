import Foundation
import TestSupport
import Testing

/// The Open MPI settings ddp-train chooses for its ranks before MPI_Init, as the ranks' MPI library reports them
/// (`--mca mpi_show_mca_params enviro` prints every parameter that came from the environment): chosen when the
/// user left them alone, and the user's own value kept otherwise.
@Suite(.serialized, .enabled(if: DDPTrainProcess.mpirunAvailable, "mpirun is not installed (run launch/setup)"))
struct TransportSettingsTests {
  static let oneStep = [
    "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--model", "mlp:8",
    "--batch-size", "16", "--max-steps", "1",
  ]

  /// What the single rank's MPI reports of `parameter`'s value, or nil when it did not come from the environment.
  func reportedValue(_ parameter: String, in output: String) -> String? {
    // Lines like "[host:1234] btl_tcp_eager_limit=1048576 (environment)".
    for line in output.split(separator: "\n") {
      guard let range = line.range(of: "] \(parameter)=") else { continue }
      return line[range.upperBound...].split(separator: " ").first.map(String.init)
    }
    return nil
  }

  func run(mca: [String]) throws -> DDPTrainProcess.Result {
    let command =
      ["mpirun", "--timeout", "60", "-np", "1", "--mca", "mpi_show_mca_params", "enviro"] + mca
      + [DDPTrainProcess.binary] + Self.oneStep
    let result = try DDPTrainProcess.execute(command, timeout: 70, directory: nil)
    #expect(result.status == 0, "\(result.output)")
    return result
  }

  @Test("messages up to 1 MiB go eagerly over TCP unless the user set a limit")
  func eagerLimitOverTCP() throws {
    let chosen = try run(mca: [])
    #expect(reportedValue("btl_tcp_eager_limit", in: chosen.output) == "1048576", "\(chosen.output)")
    #expect(reportedValue("btl_tcp_rndv_eager_limit", in: chosen.output) == "1048576", "\(chosen.output)")
    #expect(reportedValue("mpi_yield_when_idle", in: chosen.output) == "true", "\(chosen.output)")

    // A user's own limit stands, and the other one is left to Open MPI (it must not exceed the user's).
    let users = try run(mca: ["--mca", "btl_tcp_eager_limit", "65536"])
    #expect(reportedValue("btl_tcp_eager_limit", in: users.output) == "65536", "\(users.output)")
    #expect(reportedValue("btl_tcp_rndv_eager_limit", in: users.output) == nil, "\(users.output)")
  }
}
