import Foundation
import Testing

@testable import Checkpoints

/// A fresh empty folder under the system's temporary directory, removed when the test's body returns.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
  let path = NSTemporaryDirectory() + "ckpt-test-" + UUID().uuidString
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
  defer { try? FileManager.default.removeItem(atPath: path) }
  return try body(path)
}

/// The bytes of a safetensors file with the given header text and data, no padding: what a hand-written
/// or hostile file may hold.
func safetensorsFile(header: String, data: [UInt8]) -> [UInt8] {
  let headerBytes = Array(header.utf8)
  return littleEndianBytes(UInt64(headerBytes.count)) + headerBytes + data
}

func littleEndianBytes(_ value: UInt64) -> [UInt8] {
  (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

func bytes(hex: String) -> [UInt8] {
  let digits = Array(hex.utf8)
  return stride(from: 0, to: digits.count, by: 2).map {
    UInt8(String(decoding: digits[$0..<($0 + 2)], as: UTF8.self), radix: 16)!
  }
}

/// Runs `python3 -c script args...`; returns the exit status and standard output.
func runPython(_ script: String, _ arguments: [String] = []) throws -> (
  status: Int32, output: String
) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = ["python3", "-c", script] + arguments
  let output = Pipe()
  process.standardOutput = output
  process.standardError = FileHandle.nullDevice
  try process.run()
  let data = output.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Whether `python3` can import all of `modules`.
func pythonCanImport(_ modules: String) -> Bool {
  (try? runPython("import \(modules)").status) == 0
}

/// The decode error for `bytes`, or nil when decoding succeeds.
func decodeError(_ bytes: [UInt8], path: String = "/ckpt/model.safetensors") -> CheckpointError? {
  do {
    _ = try SafeTensors.decode(bytes, path: path)
    return nil
  } catch {
    return error
  }
}
