import CZlib
import Foundation
import Testing

@testable import Datasets

/// Loads that are given no cache directory (the IDX .gz tests) keep their decoded samples in one directory of the
/// system's temporary directory, not in the user's cache: set once, before any test loads.
let testCache: Void = {
  setenv(
    "XDG_CACHE_HOME", FileManager.default.temporaryDirectory.appendingPathComponent("ddp-train-test-cache").path, 1)
}()

/// A fresh directory under the system's temporary directory, removed when the value goes away.
final class TemporaryDirectory {
  let path: String

  init() {
    _ = testCache
    var template = Array(
      (FileManager.default.temporaryDirectory.appendingPathComponent("datasets-tests-XXXXXX").path)
        .utf8CString)
    let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(created != nil, "mkdtemp failed")
    path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
  }

  deinit { try? FileManager.default.removeItem(atPath: path) }

  func file(_ name: String) -> String { path + "/" + name }
}

/// IDX bytes written by hand (big-endian words), independently of the parser under test.
enum IDXBytes {
  static func word(_ value: UInt32) -> [UInt8] {
    [
      UInt8(value >> 24), UInt8((value >> 16) & 0xff), UInt8((value >> 8) & 0xff),
      UInt8(value & 0xff),
    ]
  }

  static func images(
    count: Int, rows: Int, columns: Int, pixels: [UInt8], magic: UInt32 = 0x0000_0803
  ) -> [UInt8] {
    word(magic) + word(UInt32(count)) + word(UInt32(rows)) + word(UInt32(columns)) + pixels
  }

  static func labels(_ labels: [UInt8], count: Int? = nil, magic: UInt32 = 0x0000_0801) -> [UInt8] {
    word(magic) + word(UInt32(count ?? labels.count)) + labels
  }

  /// Deterministic pixel values covering all byte values.
  static func pixels(_ count: Int, salt: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ salt &* 11 &+ ($0 >> 8)) }
  }
}

func writeFile(_ bytes: [UInt8], to path: String) {
  let ok = FileManager.default.createFile(atPath: path, contents: Data(bytes))
  precondition(ok, "could not write \(path)")
}

/// gzip through zlib's own writer (gzopen "wb"), the format gzip(1) produces.
func writeGzip(_ bytes: [UInt8], to path: String) {
  guard let file = gzopen(path, "wb") else { preconditionFailure("gzopen failed for \(path)") }
  let written = bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
  precondition(Int(written) == bytes.count, "gzwrite wrote \(written) of \(bytes.count)")
  precondition(gzclose(file) == Z_OK, "gzclose failed")
}

func gzipBytes(_ bytes: [UInt8], scratch: TemporaryDirectory) -> [UInt8] {
  let path = scratch.file("scratch-\(UUID().uuidString).gz")
  writeGzip(bytes, to: path)
  return [UInt8](FileManager.default.contents(atPath: path)!)
}

/// A directory with the four files of a small valid dataset (train 6, test 4 images of 3x2).
struct SmallDataset {
  static let rows = 3
  static let columns = 2
  static let trainLabels: [UInt8] = [9, 0, 3, 3, 7, 1]
  static let testLabels: [UInt8] = [2, 5, 8, 0]
  static let trainPixels = IDXBytes.pixels(6 * 6, salt: 1)
  static let testPixels = IDXBytes.pixels(4 * 6, salt: 2)

  /// `gzipped` names the files that are written as `.gz`.
  static func write(into directory: TemporaryDirectory, gzipped: Set<String> = []) {
    let files: [(String, [UInt8])] = [
      (
        "train-images-idx3-ubyte",
        IDXBytes.images(count: 6, rows: rows, columns: columns, pixels: trainPixels)
      ),
      ("train-labels-idx1-ubyte", IDXBytes.labels(trainLabels)),
      (
        "t10k-images-idx3-ubyte",
        IDXBytes.images(count: 4, rows: rows, columns: columns, pixels: testPixels)
      ),
      ("t10k-labels-idx1-ubyte", IDXBytes.labels(testLabels)),
    ]
    for (name, bytes) in files {
      if gzipped.contains(name) {
        writeGzip(bytes, to: directory.file(name + ".gz"))
      } else {
        writeFile(bytes, to: directory.file(name))
      }
    }
  }
}

extension Dataset {
  /// The stored bytes: a copy of them all at each use (hoist it out of loops), for tests that compare them.
  var pixels: [UInt8] { Array(samples.buffer) }
}

/// Runs `Fixtures/<script>` (next to this file) with python3 to write its files into a fresh directory; its path.
func fixtureDirectory(writtenBy script: String, failure: String) -> String {
  let path = TemporaryDirectory().path + "-" + (script as NSString).deletingPathExtension
  let location = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
    "Fixtures/" + script)
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = ["python3", location.path, path]
  try! process.run()
  process.waitUntilExit()
  precondition(process.terminationStatus == 0, "\(script) failed: \(failure)")
  return path
}
