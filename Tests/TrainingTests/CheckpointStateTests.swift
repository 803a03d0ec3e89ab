import Foundation
import Testing

@testable import Training

@Suite struct CheckpointStateTests {
  /// A state.json as the trainer writes it, as a JSON object.
  func writtenState() throws -> [String: Any] {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    var configuration = smallConfiguration(batch: 16, steps: 3)
    configuration.checkpointDirectory = directory.path
    configuration.keep = 2
    _ = try trainInThreads(ranks: 1, configuration, data: try loadSmallData(configuration))
    let bytes = try Data(contentsOf: directory.appendingPathComponent("step-00000003/state.json"))
    return try JSONSerialization.jsonObject(with: bytes) as! [String: Any]
  }

  @Test("a state.json from before a setting existed loads, the setting at its default")
  func olderStateLoads() throws {
    var object = try writtenState()
    var configuration = object["configuration"] as! [String: Any]
    #expect(configuration["keep"] as? Int == 2)
    configuration.removeValue(forKey: "keep")
    configuration.removeValue(forKey: "start_fresh")
    configuration.removeValue(forKey: "deterministic")
    object["configuration"] = configuration
    let state = try CheckpointState.decode(Array(try JSONSerialization.data(withJSONObject: object)))
    #expect(state.step == 3)
    #expect(state.configuration.keep == nil)
    #expect(state.configuration.startFresh == false)
    #expect(state.configuration.batchSize == 16)
  }

  @Test("a state.json missing what a checkpoint cannot do without is still refused")
  func essentialKeysAreRequired() throws {
    var object = try writtenState()
    object.removeValue(forKey: "step")
    #expect(throws: DecodingError.self) {
      _ = try CheckpointState.decode(Array(try JSONSerialization.data(withJSONObject: object)))
    }
    #expect(throws: (any Error).self) { _ = try CheckpointState.decode(Array("[1, 2]".utf8)) }
  }
}
