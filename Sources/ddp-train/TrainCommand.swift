import ArgumentParser
import Communication
import Datasets
import Foundation
import MPICommunication
import Training

/// `ddp-train [train] [options]`: one rank of a data-parallel training job (or the whole job, alone).
struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train", abstract: "Train the model (the default subcommand).", discussion: TrainOptions.discussion)

  @OptionGroup var options: TrainOptions

  func run() throws {
    // First of all: a stop asked for while the job starts (MPI, data) is then kept for the first step, instead of
    // killing the rank by the signal's default action.
    StopRequest.install()
    // Input errors found here (options, config file) end every rank with status 2 before MPI starts;
    // DDPTrain.main prints them once, on rank 0.
    let configuration = try options.resolveConfiguration()
    let faults = try options.faults()
    exitCodeForError = exitStatus(for:)
    let communicator = try makeCommunicator()
    do {
      let configuration = try configuration.resolvingResumeIfAny(communicator)
      // Every rank loads its own copy of the data; a bad file is reported once and ends all ranks.
      let data = try collectively(communicator) {
        try DatasetLoader.load(
          configuration.dataset, directory: configuration.dataDirectory, synthetic: configuration.synthetic,
          options: configuration.dataOptions)
      }
      let console = Console(enabled: communicator.isCoordinator, allowRedraw: !MPICommunicator.isLaunchedByMPI)
      let trainer = try collectively(communicator) {
        try Trainer(
          configuration: configuration, communicator: communicator, data: data, console: console, faults: faults)
      }
      let summary = try trainer.run()
      if summary.stoppedBy != nil {
        finishJob(communicator)
        Foundation.exit(ExitStatus.stopped)
      }
    } catch {
      endJob(after: error, communicator: communicator)
    }
    finishJob(communicator)
  }
}
