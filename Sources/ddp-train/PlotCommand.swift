import ArgumentParser
import Foundation
import Inspection
import MPICommunication
import Training

extension RunChartAxis: ExpressibleByArgument {}

/// `ddp-train plot --metrics FILE... --out DIR`: charts of how runs went, drawn from their metrics files.
struct PlotCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plot",
    abstract: "Draw charts (SVG) of runs from the metrics files that `train --metrics` writes.",
    discussion: """
      Writes five charts into DIR, one line per metrics file in each: train-loss.svg (the loss of each logged \
      step), test-loss.svg and test-accuracy.svg (end of each epoch), learning-rate.svg (each logged step) and \
      samples-per-second.svg (training throughput of each epoch). A run is labelled by its workers and batch \
      (K=4 × B=64) unless --label names it. A file that went through restarts or a resume shows each step once, \
      from the attempt that continued. Every file is read, and DIR checked, before anything is written; DIR is \
      created if needed, and each chart is written whole or not at all. Under mpirun, rank 0 does it all.
      """)

  @Option(
    parsing: .upToNextOption,
    help: ArgumentHelp("The metrics files (JSON Lines) of the runs to draw, one line in each chart.", valueName: "file")
  )
  var metrics: [String]
  @Option(help: ArgumentHelp("The folder to write the charts into (created if needed).", valueName: "dir"))
  var out: String
  @Option(help: ArgumentHelp("The x axis: optimizer steps, or epochs (a step at a fraction).", valueName: "axis"))
  var x: RunChartAxis = .step
  @Option(
    name: .customLong("label"), parsing: .upToNextOption,
    help: ArgumentHelp(
      "The legend names of the runs, in the order of --metrics (default: K=… × B=… from each file).",
      valueName: "name"))
  var labels: [String] = []

  func run() throws {
    // Everything is checked before anything is written: a bad input writes nothing.
    if labels.count > metrics.count {
      throw ConfigurationError(
        option: "--label", expected: "at most one label per metrics file (\(metrics.count))",
        found: "\(labels.count) labels", hint: "Give the labels in the order of --metrics.")
    }
    let folder = try Self.checkOutputFolder(out)
    let runs = try metrics.map { try RunMetricsSeries(path: $0) }
    guard MPICommunicator.launchRank == 0 else { return }
    let names = RunMetricsSeries.labels(for: runs, overrides: labels)
    let charts = RunMetricsSeries.charts(runs, labels: names, x: x)
    do {
      try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    } catch {
      throw TrainingError.io(path: folder, message: "cannot create the folder: \(error.localizedDescription)")
    }
    for chart in charts {
      let path = (folder as NSString).appendingPathComponent(chart.fileName)
      try OutputFile(path: path, option: "--out", formats: [.svg]).write(Array(chart.svg.utf8))
      print("wrote \(path) (\(runs.count == 1 ? "1 run" : "\(runs.count) runs"), x = \(x.rawValue))")
    }
  }

  /// `out` as a folder the charts can be written into: an existing writable folder without a folder in the way
  /// of a chart's name, or a path whose nearest existing ancestor is a writable folder (the rest is created).
  static func checkOutputFolder(_ out: String) throws -> String {
    let manager = FileManager.default
    var isDirectory: ObjCBool = false
    if manager.fileExists(atPath: out, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else {
        throw ConfigurationError(
          option: "--out", expected: "a folder for the charts", found: "'\(out)', which is a file",
          hint: "Name a folder (it is created if needed), not a file.")
      }
      guard access(out, W_OK | X_OK) == 0 else {
        throw ConfigurationError(
          option: "--out", expected: "a folder that can be written", found: "'\(out)', which is not writable",
          hint: "Choose another folder, or change its permissions.")
      }
      for name in RunMetricsSeries.chartFileNames {
        let path = (out as NSString).appendingPathComponent(name)
        if manager.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
          throw ConfigurationError(
            option: "--out", expected: "a folder where \(name) can be written", found: "'\(path)', which is a folder",
            hint: "Remove it, or choose another --out.")
        }
      }
      return out
    }
    // The nearest ancestor that exists must be a writable folder.
    var ancestor = (out as NSString).deletingLastPathComponent
    while !ancestor.isEmpty && !manager.fileExists(atPath: ancestor, isDirectory: &isDirectory) {
      let parent = (ancestor as NSString).deletingLastPathComponent
      if parent == ancestor { break }
      ancestor = parent
    }
    if ancestor.isEmpty {
      ancestor = "."
      _ = manager.fileExists(atPath: ancestor, isDirectory: &isDirectory)
    }
    guard isDirectory.boolValue else {
      throw ConfigurationError(
        option: "--out", expected: "a folder for the charts",
        found: "'\(out)', which lies under the file '\(ancestor)'",
        hint: "Choose a path inside a folder.")
    }
    guard access(ancestor, W_OK | X_OK) == 0 else {
      throw ConfigurationError(
        option: "--out", expected: "a folder that can be created",
        found: "'\(out)', under '\(ancestor)', which is not writable",
        hint: "Choose a folder you can write to.")
    }
    return out
  }
}
