import Foundation
import TestSupport
import Testing

/// `predict` and `eval` on a trained checkpoint, through the built binary: their numbers agree with each other
/// and with training's final accuracy; pictures are written whole; bad inputs exit 2 and write nothing.
@Suite(.serialized)
struct InspectionCommandTests {
  /// A trained checkpoint, made once for the suite (a few seconds).
  static let trained: Result<URL, any Error> = Result {
    let scratch = try makeScratchDirectory("inspect")
    let checkpoints = scratch.appendingPathComponent("ck")
    let result = try DDPTrainProcess.run([
      "--dataset", "synthetic", "--synthetic-train", "1024", "--synthetic-test", "300", "--model", "mlp:16",
      "--batch-size", "32", "--epochs", "2", "--lr", "0.02", "--checkpoint-dir", checkpoints.path,
    ])
    guard result.status == 0 else { throw CocoaError(.executableLoad) }
    return checkpoints
  }

  func json(_ result: DDPTrainProcess.Result) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
  }

  @Test("eval --json: the confusion matrix sums to the test set, its diagonal is eval's correct count")
  func evalConfusionAgreesWithAccuracy() throws {
    let checkpoints = try Self.trained.get()
    let result = try DDPTrainProcess.run(["eval", "--checkpoint", checkpoints.path, "--json"])
    #expect(result.status == 0, "\(result.output)")
    let object = try json(result)
    let counts = try #require(object["counts"] as? [[Int]])
    #expect(counts.count == 10 && counts.allSatisfy { $0.count == 10 })
    #expect(counts.joined().reduce(0, +) == 300)
    let diagonal = (0..<10).reduce(0) { $0 + counts[$1][$1] }
    let accuracy = try #require(object["test_accuracy"] as? Double)
    #expect(diagonal == Int((accuracy * 300).rounded()), "accuracy \(accuracy), diagonal \(diagonal)")
    let perClass = try #require(object["per_class"] as? [[String: Any]])
    #expect(perClass.map { $0["support"] as? Int ?? -1 } == counts.map { $0.reduce(0, +) })
    #expect(perClass.first?["name"] as? String == "class 0")
    // The text form shows the same table.
    let text = try DDPTrainProcess.run(["eval", "--checkpoint", checkpoints.path])
    #expect(text.stdout.contains("confusion matrix (rows: true class, columns: predicted class)"), "\(text.stdout)")
    #expect(text.stdout.contains(String(format: "(%d of 300 right)", diagonal)), "\(text.stdout)")
  }

  @Test("predict --misclassified lists exactly the wrong ones: as many as eval's mistakes, none right")
  func misclassifiedMatchesEval() throws {
    let checkpoints = try Self.trained.get()
    let evaluation = try json(try DDPTrainProcess.run(["eval", "--checkpoint", checkpoints.path, "--json"]))
    let wrong = 300 - (evaluation["correct"] as? Int ?? -1)
    let result = try DDPTrainProcess.run(["predict", "--checkpoint", checkpoints.path, "--misclassified", "--json"])
    #expect(result.status == 0, "\(result.output)")
    let predictions = try #require(try json(result)["predictions"] as? [[String: Any]])
    #expect(predictions.count == wrong)
    #expect(predictions.allSatisfy { $0["correct"] as? Bool == false && $0["true"] as? Int != $0["predicted"] as? Int })
    // Each listed index, asked for by itself, is predicted the same way.
    let some = predictions.prefix(3).compactMap { $0["index"] as? Int }
    let again = try json(
      try DDPTrainProcess.run([
        "predict", "--checkpoint", checkpoints.path, "--indices", some.map(String.init).joined(separator: ","),
        "--top", "3", "--json",
      ]))
    let rows = try #require(again["predictions"] as? [[String: Any]])
    #expect(rows.compactMap { $0["index"] as? Int } == some)
    for row in rows {
      let top = try #require(row["top"] as? [[String: Any]])
      let probabilities = top.compactMap { $0["probability"] as? Double }
      #expect(probabilities.count == 3 && probabilities == probabilities.sorted(by: >))
    }
  }

  @Test("predict prints one row per sample with class names, alone and under mpirun (rank 0 only)")
  func predictRows() throws {
    let checkpoints = try Self.trained.get()
    let alone = try DDPTrainProcess.run(["predict", "--checkpoint", checkpoints.path, "--count", "4"])
    #expect(alone.status == 0, "\(alone.output)")
    let rows = alone.stdout.split(separator: "\n").filter { $0.hasSuffix("yes") || $0.hasSuffix("NO") }
    #expect(rows.count == 4, "\(alone.stdout)")
    #expect(alone.stdout.contains("runner-up"), "\(alone.stdout)")
    guard DDPTrainProcess.mpirunAvailable else { return }
    let ranks = try DDPTrainProcess.mpirun(ranks: 2, ["predict", "--checkpoint", checkpoints.path, "--count", "4"])
    #expect(ranks.status == 0, "\(ranks.output)")
    #expect(ranks.stdout == alone.stdout)
  }

  @Test("predict and eval work for the convolutional network too (the images in their 1x28x28 shape)")
  func convolutionalModel() throws {
    let scratch = try makeScratchDirectory("inspect-cnn")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let checkpoints = scratch.appendingPathComponent("ck").path
    let trained = try DDPTrainProcess.run([
      "--dataset", "synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--model", "cnn",
      "--batch-size", "32", "--max-steps", "8", "--checkpoint-dir", checkpoints,
    ])
    #expect(trained.status == 0, "\(trained.output)")
    let image = scratch.appendingPathComponent("cnn.png").path
    let predicted = try DDPTrainProcess.run([
      "predict", "--checkpoint", checkpoints, "--count", "5", "--image", image, "--json",
    ])
    #expect(predicted.status == 0, "\(predicted.output)")
    #expect((try json(predicted)["predictions"] as? [[String: Any]])?.count == 5)
    #expect(FileManager.default.fileExists(atPath: image))
    let evaluated = try json(try DDPTrainProcess.run(["eval", "--checkpoint", checkpoints, "--json"]))
    #expect((evaluated["counts"] as? [[Int]])?.joined().reduce(0, +) == 64)
    #expect((evaluated["model"] as? String)?.hasPrefix("cnn ") == true, "\(evaluated)")
  }

  @Test("predict --image and eval --confusion write whole PNG and SVG files")
  func pictures() throws {
    let checkpoints = try Self.trained.get()
    let scratch = try makeScratchDirectory("pictures")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    for (command, option, name) in [
      ("predict", "--image", "grid.png"), ("predict", "--image", "grid.svg"), ("eval", "--confusion", "cm.png"),
      ("eval", "--confusion", "cm.svg"),
    ] {
      let path = scratch.appendingPathComponent(name).path
      let result = try DDPTrainProcess.run([command, "--checkpoint", checkpoints.path, option, path])
      #expect(result.status == 0, "\(result.output)")
      let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
      if name.hasSuffix(".png") {
        #expect(Array(bytes.prefix(8)) == signature, "\(name)")
      } else {
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.hasPrefix("<svg") && text.hasSuffix("</svg>\n"), "\(name)")
      }
    }
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: scratch.path).sorted() == [
        "cm.png", "cm.svg", "grid.png", "grid.svg",
      ])
  }

  @Test(
    "bad inputs: no checkpoint, an index past the test set, an unwritable picture: exit 2, one message, nothing written"
  )
  func badInputs() throws {
    let checkpoints = try Self.trained.get()
    let scratch = try makeScratchDirectory("inspect-bad")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let cases: [([String], String)] = [
      (["predict", "--checkpoint", scratch.appendingPathComponent("none").path], "no complete checkpoint here"),
      (["eval", "--checkpoint", scratch.path], "no complete checkpoint here"),
      (
        ["predict", "--checkpoint", checkpoints.path, "--indices", "3,300"],
        "--indices: expected indices below the test set's size 300, found 300"
      ),
      (["predict", "--checkpoint", checkpoints.path, "--indices", "a"], "--indices: expected test-set indices"),
      (["predict", "--checkpoint", checkpoints.path, "--top", "11"], "--top: expected a number of classes in 1...10"),
      (
        ["predict", "--checkpoint", checkpoints.path, "--image", scratch.appendingPathComponent("no/such/g.png").path],
        "--image: expected a file in an existing folder that can be written"
      ),
      (["predict", "--checkpoint", checkpoints.path, "--image", scratch.path], "which is a folder"),
      (
        ["eval", "--checkpoint", checkpoints.path, "--confusion", scratch.appendingPathComponent("c.jpg").path],
        "--confusion: expected a file name ending in .svg or .png"
      ),
    ]
    for (arguments, message) in cases {
      let result = try DDPTrainProcess.run(arguments)
      #expect(result.status == 2, "\(arguments): \(result.output)")
      #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
      #expect(result.stderr.components(separatedBy: "ddp-train:").count - 1 == 1, "\(result.stderr)")
      #expect(result.stdout.isEmpty, "\(arguments): \(result.stdout)")
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)
  }
}
