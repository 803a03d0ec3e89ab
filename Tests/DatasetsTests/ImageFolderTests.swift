import Foundation
import Testing

@testable import Datasets

/// The folders of `Fixtures/make_image_folders.py`, written by its own PNG encoder when the tests start.
enum ImageFolderFixtures {
  static let directory = fixtureDirectory(writtenBy: "make_image_folders.py", failure: "it needs python3")

  /// Image k of class `label`, channel c, as the script computes it, scaled to [0, 1]: [c, h, w] for `channels`
  /// channels; a gray image (k % 4 == 0 in the colour folder, every image in the gray one) repeats channel 0.
  static func expected(label: Int, k: Int, channels: Int, gray: Bool) -> [Float] {
    var values: [Float] = []
    for c in 0..<channels {
      for y in 0..<5 {
        for x in 0..<6 {
          values.append(Float((label * 50 + k * 13 + (gray ? 0 : c) * 29 + y * 7 + x * 3) % 256) / 255)
        }
      }
    }
    return values
  }
}

@Suite("PNG image folders")
struct ImageFolderTests {
  let scratch = TemporaryDirectory()
  var options: DataOptions { DataOptions(cacheDirectory: scratch.file("cache")) }

  func load(_ name: String, options: DataOptions? = nil) throws -> DatasetPair {
    try DatasetLoader.load(
      .folder, directory: ImageFolderFixtures.directory + "/" + name, synthetic: SyntheticSpec(),
      options: options ?? self.options)
  }

  @Test("gray PNGs: classes from the sorted folder names, samples in class then file order, values exact")
  func grayFolder() throws {
    let pair = try load("gray")
    #expect(pair.classNames == ["cat", "dog", "eel"])
    #expect(pair.train.count == 12 && pair.test.count == 6)
    #expect(pair.train.sampleShape == [1, 5, 6] && pair.train.classCount == 3)
    #expect(pair.train.labels == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    for index in 0..<12 {
      #expect(
        pair.train.sample(index)
          == ImageFolderFixtures.expected(label: index / 4, k: index % 4, channels: 1, gray: true))
    }
    #expect(pair.test.sample(5) == ImageFolderFixtures.expected(label: 2, k: 1, channels: 1, gray: true))
    #expect(pair.train.samples.isMapped)
  }

  @Test("gray, RGB, palette and RGBA PNGs together make RGB samples, the gray ones replicated")
  func colourFolder() throws {
    let pair = try load("colour")
    #expect(pair.train.sampleShape == [3, 5, 6])
    for index in 0..<12 {
      let k = index % 4
      #expect(
        pair.train.sample(index)
          == ImageFolderFixtures.expected(label: index / 4, k: k, channels: 3, gray: k == 0), "image \(index)")
    }
  }

  @Test("decoded once per host, even with --data-copies rank; a changed image rebuilds the cache")
  func cached() throws {
    _ = try load("gray")
    let entries = {
      (try? FileManager.default.contentsOfDirectory(atPath: scratch.file("cache")))?.filter { $0.hasSuffix(".npy") }
        .sorted() ?? []
    }
    let first = entries()
    #expect(first.count == 2)
    _ = try load("gray", options: DataOptions(cacheDirectory: scratch.file("cache"), copies: .rank))
    #expect(entries() == first)
    // A copy of the folder with one image's time changed gets entries of its own version.
    let copy = scratch.file("copy")
    try FileManager.default.copyItem(atPath: ImageFolderFixtures.directory + "/gray", toPath: copy)
    let cache = DataOptions(cacheDirectory: scratch.file("copy-cache"))
    let before = try DatasetLoader.load(.folder, directory: copy, synthetic: SyntheticSpec(), options: cache)
    let names = {
      (try? FileManager.default.contentsOfDirectory(atPath: scratch.file("copy-cache")))?.filter {
        $0.hasSuffix(".npy")
      }.sorted() ?? []
    }
    let old = names()
    try FileManager.default.setAttributes(
      [.modificationDate: Date(timeIntervalSince1970: 1_000_000)], ofItemAtPath: copy + "/test/dog/001.png")
    let after = try DatasetLoader.load(.folder, directory: copy, synthetic: SyntheticSpec(), options: cache)
    #expect(names().count == 2 && Set(names()).isDisjoint(with: old))
    #expect(after.test.pixels == before.test.pixels)
  }

  @Test(
    "folders it must refuse",
    arguments: [
      ("other-size", "train/dog/001.png", "is 6x6 pixels; expected 6x5, the size of "),
      ("empty-class", "train/eel", "is an empty class folder (expected .png images)"),
      ("not-png", "train/cat/notes.txt", "is not a .png file"),
      ("unknown-test-class", "test/fox", "is a class the training images do not have (their classes: cat, dog, eel)"),
      ("corrupt", "test/cat/001.png", "cannot be decoded (libpng: "),
    ])
  func refusals(folder: String, path: String, problem: String) {
    let error = #expect(throws: DatasetError.self) { try load(folder) }
    #expect(error?.path == ImageFolderFixtures.directory + "/\(folder)/\(path)", "\(error?.path ?? "")")
    #expect(error?.problem.hasPrefix(problem) == true, "\(error?.problem ?? "")")
    let left = (try? FileManager.default.contentsOfDirectory(atPath: scratch.file("cache"))) ?? []
    #expect(left.filter { !$0.hasSuffix(".lock") }.isEmpty, "\(left)")
  }
}
