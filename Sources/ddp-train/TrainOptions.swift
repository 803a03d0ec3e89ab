import ArgumentParser
import Datasets
import Training

extension DatasetKind: ExpressibleByArgument {}

/// The `train` options of `train` and `bench`: `--config`, and every option of `TrainOption.all` (docs/INTERFACE.md),
/// which the table parses itself so that the command line, the config file and `--help` share one declaration.
/// Unset means "the config file's value, else the default of `TrainingConfiguration`".
struct TrainOptions: ParsableArguments {
  @Option(help: "A YAML file like cluster.yaml; its `train:` section sets options, the command line overrides it.")
  var config: String?

  @Option(
    help: ArgumentHelp(
      "For tests: KIND@RANK:STEP, KIND one of crash, exit, kill, term, error, hang, perturb, nan, killwrite, termwrite[:once].",
      visibility: .hidden)
  )
  var injectFault: String?

  @Argument(parsing: .allUnrecognized, help: "Train options (listed above).")
  var trainArguments: [String] = []

  /// `--help`'s list of the options the table parses.
  static let discussion =
    "Train options (each also a config-file key without its dashes):\n"
    + TrainOption.helpText()

  /// Defaults ← config file ← command line, validated. Throws input errors only (exit 2).
  func resolveConfiguration() throws -> TrainingConfiguration {
    let given = try TrainOption.parse(trainArguments)
    var configuration = TrainingConfiguration()
    if let config {
      let file = try ConfigFile.load(path: config)
      try file.applyTrainSection(to: &configuration)
    }
    try TrainOption.apply(given, to: &configuration)
    try configuration.validate()
    return configuration
  }

  /// The test-only fault to inject, if any.
  func faults() throws -> FaultInjection? {
    try injectFault.map { text throws(ConfigurationError) in try FaultInjection(parsing: text) }
  }
}
