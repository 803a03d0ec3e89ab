/// The one place that builds an `mpirun` command line for ddp-train: `ddp-train launch` and the scaling study
/// both use it.
///
/// docs/runtime-notes.md: as root mpirun needs --allow-run-as-root; more ranks than cores on one host need
/// --oversubscribe, and then Open MPI drops core binding, so every rank is held to one BLAS thread; a failed rank
/// takes the others down at once (odls_base_sigkill_timeout 0).
public struct MPIRunCommand: Equatable, Sendable {
  public var mpirun = "mpirun"
  public var ranks: Int
  /// Ranks on this host only: oversubscribe when they exceed `cores`. False with a hostfile (mpirun places them).
  public var local = true
  public var cores: Int
  public var isRoot: Bool
  public var hostfile: String?
  /// Passed to mpirun before the program (a cluster.yaml's `mpirun-args`, or `--timeout N`).
  public var mpirunArguments: [String] = []

  public init(mpirun: String = "mpirun", ranks: Int, cores: Int, isRoot: Bool) {
    self.mpirun = mpirun
    self.ranks = ranks
    self.cores = cores
    self.isRoot = isRoot
  }

  public var oversubscribes: Bool { local && ranks > cores }

  /// `mpirun -np K [--oversubscribe] [--hostfile F] [--allow-run-as-root] -x OPENBLAS_NUM_THREADS=1 ... program`.
  public func words(program: [String]) -> [String] {
    var command = [mpirun, "-np", String(ranks)]
    if oversubscribes { command.append("--oversubscribe") }
    if let hostfile { command += ["--hostfile", hostfile] }
    if isRoot { command.append("--allow-run-as-root") }
    command += ["-x", "OPENBLAS_NUM_THREADS=1", "--mca", "odls_base_sigkill_timeout", "0"]
    return command + mpirunArguments + program
  }
}
