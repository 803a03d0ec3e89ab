import Foundation
import Testing

@testable import Checkpoints

#if canImport(Glibc)
  import Glibc
#endif

private let fileManager = FileManager.default

private func checkpointFiles(_ tag: String) -> [(name: String, bytes: [UInt8])] {
  [
    (CheckpointDirectory.modelFile, Array("model \(tag)".utf8)),
    (CheckpointDirectory.optimizerFile, Array("optimizer \(tag)".utf8)),
    (CheckpointDirectory.stateFile, Array(#"{"tag": "\#(tag)"}"#.utf8)),
  ]
}

private func contents(_ path: String) -> [String] {
  ((try? fileManager.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

private func isDirectory(_ path: String) -> Bool {
  var directory: ObjCBool = false
  return fileManager.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
}

/// Whether permission bits are enforced for this process (not root, nor a capability that bypasses them).
private let permissionsEnforced = getuid() != 0

@Suite struct CheckpointDirectoryWriteTests {
  @Test func writeCreatesTheFinalFolderWithTheFiles() throws {
    try withTemporaryDirectory { root in
      let dir = root + "/ckpt"
      let location = try CheckpointDirectory(path: dir).write(step: 42, files: checkpointFiles("A"))
      #expect(location == CheckpointLocation(step: 42, path: dir + "/step-00000042"))
      #expect(contents(dir) == ["step-00000042"])  // no temporary folder left behind
      #expect(
        contents(location.path) == [
          CheckpointDirectory.modelFile, CheckpointDirectory.optimizerFile, "state.json",
        ])
      for file in checkpointFiles("A") {
        #expect(fileManager.contents(atPath: location.path + "/" + file.name) == Data(file.bytes))
        #expect(try CheckpointDirectory(path: dir).read(file.name, of: location) == file.bytes)
      }
    }
  }

  @Test func writeCreatesMissingParents() throws {
    try withTemporaryDirectory { root in
      let dir = root + "/a/b/c/"
      let location = try CheckpointDirectory(path: dir).write(step: 0, files: checkpointFiles("A"))
      #expect(location.path == dir + "step-00000000")
      #expect(isDirectory(root + "/a/b/c/step-00000000"))
    }
  }

  @Test func writeReplacesACheckpointOfTheSameStep() throws {
    try withTemporaryDirectory { root in
      let directory = CheckpointDirectory(path: root)
      _ = try directory.write(step: 7, files: checkpointFiles("old") + [("extra.txt", [1])])
      let location = try directory.write(step: 7, files: checkpointFiles("new"))
      #expect(contents(root) == ["step-00000007"])
      #expect(
        contents(location.path) == [
          CheckpointDirectory.modelFile, CheckpointDirectory.optimizerFile, "state.json",
        ])
      #expect(
        try directory.read(CheckpointDirectory.modelFile, of: location) == Array("model new".utf8))
    }
  }

  @Test func writeIntoAFileFailsAndLeavesNothing() throws {
    try withTemporaryDirectory { root in
      let file = root + "/file"
      #expect(fileManager.createFile(atPath: file, contents: Data("x".utf8)))
      for path in [file, file + "/sub"] {
        #expect(throws: CheckpointError.self) {
          try CheckpointDirectory(path: path).write(step: 1, files: checkpointFiles("A"))
        }
      }
      #expect(contents(root) == ["file"])
      #expect(fileManager.contents(atPath: file) == Data("x".utf8))
    }
  }

  @Test func aFailedFileWriteLeavesNoFolder() throws {
    try withTemporaryDirectory { root in
      let directory = CheckpointDirectory(path: root)
      _ = try directory.write(step: 3, files: checkpointFiles("kept"))
      // open(2) fails with ENAMETOOLONG after the temporary folder and the first file exist.
      let files = checkpointFiles("A") + [(String(repeating: "n", count: 300), [UInt8]())]
      let error = try #require(throws: CheckpointError.self) {
        try directory.write(step: 3, files: files)
      }
      #expect(error.problem.contains("File name too long"), "\(error)")
      #expect(contents(root) == ["step-00000003"])
      #expect(
        try directory.read(CheckpointDirectory.modelFile, of: directory.list()[0])
          == Array("model kept".utf8))
      #expect(throws: CheckpointError.self) { try directory.write(step: 4, files: files) }
      #expect(contents(root) == ["step-00000003"])
    }
  }

  @Test func readOfAMissingFileNamesIt() throws {
    try withTemporaryDirectory { root in
      let directory = CheckpointDirectory(path: root)
      let location = try directory.write(step: 1, files: checkpointFiles("A"))
      let error = try #require(throws: CheckpointError.self) {
        try directory.read("nope.json", of: location)
      }
      #expect(error.path == location.path + "/nope.json")
      let unreadable = try #require(throws: CheckpointError.self) {
        try directory.read(
          "x", of: CheckpointLocation(step: 1, path: root + "/step-00000001/model.safetensors"))
      }
      #expect(unreadable.problem.contains("Not a directory"), "\(unreadable)")
    }
  }
}

@Suite struct CheckpointDirectoryListTests {
  @Test func listIsNewestFirstAndOnlyComplete() throws {
    try withTemporaryDirectory { root in
      let directory = CheckpointDirectory(path: root)
      for step in [1, 10, 3] {
        _ = try directory.write(step: step, files: checkpointFiles("\(step)"))
      }
      func makeFolder(_ name: String, files: [String]) throws {
        try fileManager.createDirectory(
          atPath: root + "/" + name, withIntermediateDirectories: false)
        for file in files {
          _ = fileManager.createFile(atPath: root + "/" + name + "/" + file, contents: Data())
        }
      }
      let all = [
        CheckpointDirectory.modelFile, CheckpointDirectory.optimizerFile,
        CheckpointDirectory.stateFile,
      ]
      try makeFolder(".tmp-step-00000099-12345", files: all)  // a write in progress
      try makeFolder("step-00000060", files: Array(all.dropLast()))  // missing state.json
      try makeFolder("step-00000070", files: [])
      try makeFolder("step-123", files: all)  // not 8 digits
      try makeFolder("step-000000071", files: all)
      try makeFolder("step-0000007a", files: all)
      try makeFolder("step-+0000072", files: all)
      try makeFolder("step-00000080", files: Array(all.dropLast()))  // state.json is a folder
      try fileManager.createDirectory(
        atPath: root + "/step-00000080/state.json", withIntermediateDirectories: false)
      _ = fileManager.createFile(atPath: root + "/step-00000050", contents: Data())  // a stray file
      _ = fileManager.createFile(atPath: root + "/notes.txt", contents: Data())

      #expect(try directory.list().map(\.step) == [10, 3, 1])
      #expect(
        try directory.list().map(\.path) == ["10", "03", "01"].map { root + "/step-000000" + $0 })
    }
  }

  @Test func listOfAMissingDirectoryIsEmpty() throws {
    try withTemporaryDirectory { root in
      let listed = try CheckpointDirectory(path: root + "/none").list()
      #expect(listed == [])
    }
  }

  @Test func listOfAFileFails() throws {
    try withTemporaryDirectory { root in
      _ = fileManager.createFile(atPath: root + "/file", contents: Data())
      let error = try #require(throws: CheckpointError.self) {
        try CheckpointDirectory(path: root + "/file").list()
      }
      #expect(error.path == root + "/file")
      #expect(error.problem.contains("not a directory"))
    }
  }

  @Test func pruneKeepsTheNewest() throws {
    try withTemporaryDirectory { root in
      let directory = CheckpointDirectory(path: root)
      for step in [5, 1, 4, 2, 3] {
        _ = try directory.write(step: step, files: checkpointFiles("\(step)"))
      }
      try fileManager.createDirectory(
        atPath: root + "/.tmp-step-00000000-999", withIntermediateDirectories: false)
      try fileManager.createDirectory(
        atPath: root + "/step-00000000", withIntermediateDirectories: false)

      try directory.prune(keep: 10)
      #expect(try directory.list().map(\.step) == [5, 4, 3, 2, 1])
      try directory.prune(keep: 2)
      #expect(try directory.list().map(\.step) == [5, 4])
      #expect(
        contents(root) == [
          ".tmp-step-00000000-999", "step-00000000", "step-00000004", "step-00000005",
        ])
      try directory.prune(keep: 0)
      #expect(try directory.list() == [])
      #expect(contents(root) == [".tmp-step-00000000-999", "step-00000000"])
    }
  }

  @Test func pruneOfAMissingDirectoryDoesNothing() throws {
    try withTemporaryDirectory { root in
      try CheckpointDirectory(path: root + "/none").prune(keep: 1)
      #expect(contents(root) == [])
    }
  }
}

@Suite struct CheckpointDirectoryValidationTests {
  @Test func existingOrCreatableDirectoriesAreFine() throws {
    try withTemporaryDirectory { root in
      try CheckpointDirectory(path: root).validateWritable()
      try CheckpointDirectory(path: root + "/new").validateWritable()
      try CheckpointDirectory(path: root + "/new/deeper/still").validateWritable()
      try CheckpointDirectory(path: "relative-\(UUID().uuidString)").validateWritable()
      #expect(contents(root) == [])  // validation writes nothing
    }
  }

  @Test func aRegularFileIsRejected() throws {
    try withTemporaryDirectory { root in
      _ = fileManager.createFile(atPath: root + "/file", contents: Data())
      let error = try #require(throws: CheckpointError.self) {
        try CheckpointDirectory(path: root + "/file").validateWritable()
      }
      #expect(error.path == root + "/file")
      #expect(error.problem == "exists but is not a directory")
    }
  }

  @Test func aPathUnderAFileIsRejected() throws {
    try withTemporaryDirectory { root in
      _ = fileManager.createFile(atPath: root + "/file", contents: Data())
      let error = try #require(throws: CheckpointError.self) {
        try CheckpointDirectory(path: root + "/file/sub/deeper").validateWritable()
      }
      #expect(error.path == root + "/file/sub/deeper")
      #expect(error.problem == "cannot be created because \(root)/file is not a directory")
    }
  }

  @Test(
    .enabled(
      if: permissionsEnforced,
      "runs as root, where permission bits are not enforced; aPathUnderAFileIsRejected covers the error path"
    ))
  func aReadOnlyDirectoryIsRejected() throws {
    try withTemporaryDirectory { root in
      let readOnly = root + "/ro"
      try fileManager.createDirectory(
        atPath: readOnly, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o555]
      )
      defer { try? fileManager.setAttributes([.posixPermissions: 0o755], ofItemAtPath: readOnly) }
      for path in [readOnly, readOnly + "/new/sub"] {
        let error = try #require(throws: CheckpointError.self) {
          try CheckpointDirectory(path: path).validateWritable()
        }
        #expect(error.problem.contains("is not writable"), "\(error)")
        #expect(throws: CheckpointError.self) {
          try CheckpointDirectory(path: path).write(step: 1, files: checkpointFiles("A"))
        }
      }
      #expect(contents(readOnly) == [])
    }
  }

  @Test(arguments: [
    ("a/b", "a"), ("a/b/", "a"), ("b", "."), ("/b", "/"), ("/", "/"), ("a//b", "a"),
    ("/a/b//", "/a"),
  ])
  func parentOfAPath(path: String, parent: String) {
    #expect(FileSystem.parent(path) == parent)
  }

  @Test func folderNames() {
    #expect(CheckpointDirectory.folderName(42) == "step-00000042")
    #expect(CheckpointDirectory.folderName(99_999_999) == "step-99999999")
    #expect(CheckpointDirectory.step(ofFolder: "step-00000042") == 42)
    #expect(CheckpointDirectory.step(ofFolder: "step-99999999") == 99_999_999)
    for name in [
      "step-0000042", "step-000000042", "step--0000042", "step-+0000042", "Step-00000042",
      ".tmp-step-00000042-1",
    ] {
      #expect(CheckpointDirectory.step(ofFolder: name) == nil, "\(name)")
    }
  }
}
