import Checkpoints
import Foundation
import TestSupport
import Testing

/// Helpers for tests that act on a job while it runs: wait for its checkpoints, find its ranks, verify what it left.
enum JobWatching {
  /// Polls `condition` every 10 ms until it holds (true) or `timeout` seconds pass (false).
  @discardableResult
  static func wait(timeout: Double = 30, until condition: () -> Bool) -> Bool {
    let start = Date()
    while !condition() {
      if Date().timeIntervalSince(start) > timeout { return false }
      usleep(10_000)
    }
    return true
  }

  /// The steps of the complete checkpoints in `directory`, newest first (empty when there are none or no directory).
  static func steps(in directory: URL) -> [Int] {
    (try? CheckpointDirectory(path: directory.path).list().map(\.step)) ?? []
  }

  /// Waits until `directory` holds a complete checkpoint, then a random 0-`jitter` s more (the stop lands at a
  /// different step every run).
  static func waitForFirstCheckpoint(in directory: URL, jitter: Double = 0.3) -> Bool {
    guard wait(until: { !steps(in: directory).isEmpty }) else { return false }
    usleep(UInt32(Double.random(in: 0...jitter) * 1_000_000))
    return true
  }

  /// Every process below `ancestor` (children, grandchildren, ...) whose program name is `name`, by /proc.
  static func descendants(of ancestor: pid_t, named name: String = "ddp-train") -> [pid_t] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var parents: [pid_t: pid_t] = [:]
    var names: [pid_t: String] = [:]
    for entry in entries {
      guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
        let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
      else { continue }
      // "pid (comm) state ppid ...": the name may hold spaces, so split after the last ')'.
      let fields = stat[stat.index(after: close)...].split(separator: " ")
      guard fields.count > 1, let parent = pid_t(fields[1]) else { continue }
      parents[pid] = parent
      names[pid] = String(stat[stat.index(after: open)..<close])
    }
    func descends(_ pid: pid_t) -> Bool {
      var current = parents[pid]
      while let parent = current, parent > 1 {
        if parent == ancestor { return true }
        current = parents[parent]
      }
      return false
    }
    return parents.keys.filter { names[$0] == name && descends($0) }.sorted()
  }

  /// Waits until `count` ranks run below `ancestor` and returns them.
  static func ranks(of ancestor: pid_t, count: Int) -> [pid_t] {
    var found: [pid_t] = []
    wait {
      found = descendants(of: ancestor).filter { $0 != ancestor }
      return found.count >= count
    }
    return found
  }

  /// Every complete checkpoint in `directory` verifies as --resume checks it: both tensor files decode and match
  /// the SHA-256 in state.json. Returns their steps, newest first.
  @discardableResult
  static func verifyAll(in directory: URL) throws -> [Int] {
    let checkpoints = CheckpointDirectory(path: directory.path)
    let locations = try checkpoints.list()
    for location in locations {
      let state =
        try JSONSerialization.jsonObject(with: Data(checkpoints.read("state.json", of: location))) as? [String: Any]
      let files = state?["files"] as? [String: String] ?? [:]
      for file in [CheckpointDirectory.modelFile, CheckpointDirectory.optimizerFile] {
        let bytes = try checkpoints.read(file, of: location)
        _ = try SafeTensors.decode(bytes, path: location.path + "/" + file)
        #expect(files[file] == SHA256.hexDigest(bytes), "\(location.path)/\(file) does not match its recorded hash")
      }
    }
    return locations.map(\.step)
  }

  /// The entries of `directory` whose names start with ".tmp-" (checkpoint writes that did not finish).
  static func temporaryFolders(in directory: URL) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).filter { $0.hasPrefix(".tmp-") }
  }

  /// The metrics file's events of one kind, in order.
  static func events(_ kind: String, in metrics: URL) throws -> [[String: Any]] {
    try String(contentsOf: metrics, encoding: .utf8).split(separator: "\n").compactMap {
      let event = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
      return event?["event"] as? String == kind ? event : nil
    }
  }

  /// The step in "stopped by SIGTERM after step 1234 (...)".
  static func stoppedStep(in output: String) -> Int? {
    guard let range = output.range(of: "after step ") else { return nil }
    return Int(output[range.upperBound...].prefix { $0.isNumber })
  }
}

/// A small tmpfs mounted for one test (root only): a disk that fills, or that can be remounted read-only.
final class ScratchFileSystem {
  let mountPoint: URL

  /// True where this process may mount a tmpfs (root in a machine or container that allows it).
  static let available: Bool = {
    guard getuid() == 0, let probe = try? ScratchFileSystem(bytes: 64 * 1024, label: "probe") else { return false }
    probe.unmount()
    return true
  }()

  init(bytes: Int, label: String) throws {
    mountPoint = try makeScratchDirectory("tmpfs-\(label)")
    guard Self.mount(["-t", "tmpfs", "-o", "size=\(bytes)", "tmpfs", mountPoint.path]) else {
      try? FileManager.default.removeItem(at: mountPoint)
      throw CocoaError(.fileWriteNoPermission)
    }
  }

  /// `mount -o remount,ro`: every later write fails with EROFS.
  func makeReadOnly() -> Bool { Self.mount(["-o", "remount,ro", mountPoint.path]) }

  func unmount() {
    _ = Self.run("/bin/umount", ["-l", mountPoint.path])
    try? FileManager.default.removeItem(at: mountPoint)
  }

  private static func mount(_ arguments: [String]) -> Bool { run("/bin/mount", arguments) }

  private static func run(_ program: String, _ arguments: [String]) -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: program)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
  }
}
