import Foundation
import Testing

@testable import Datasets

@Suite("The cache of decoded samples")
struct DatasetCacheTests {
  let scratch = TemporaryDirectory()
  var cache: DatasetCache { DatasetCache(directory: scratch.file("cache")) }

  func files() -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: cache.directory)) ?? []).filter { !$0.hasSuffix(".lock") }
      .sorted()
  }

  func entry(version: String, builds: Counter, bytes: [UInt8] = [1, 2, 3], delay: Double = 0) throws -> String {
    try cache.entry(source: "/data/source", version: version, name: "source") { writer throws(DatasetError) in
      builds.increment()
      if delay > 0 { Thread.sleep(forTimeInterval: delay) }
      try writer.write(bytes)
    }
  }

  final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
  }

  @Test("ranks that ask at once wait for one build and share it")
  func oneBuild() throws {
    let builds = Counter()
    let paths = Counter()
    var results = [String](repeating: "", count: 4)
    let lock = NSLock()
    DispatchQueue.concurrentPerform(iterations: 4) { index in
      // Each call opens the lock file itself, as separate processes do: flock excludes across descriptions.
      let path = try? entry(version: "v1", builds: builds, delay: 0.2)
      lock.withLock { results[index] = path ?? "" }
      paths.increment()
    }
    #expect(builds.value == 1)
    #expect(Set(results).count == 1 && !results[0].isEmpty)
    #expect(files() == [(results[0] as NSString).lastPathComponent])
    #expect(FileManager.default.contents(atPath: results[0]) == Data([1, 2, 3]))
  }

  @Test("a changed source is rebuilt, and its old entry removed")
  func staleEntry() throws {
    let builds = Counter()
    let first = try entry(version: "size 10 time 1", builds: builds)
    #expect(try entry(version: "size 10 time 1", builds: builds) == first)
    #expect(builds.value == 1)
    let second = try entry(version: "size 10 time 2", builds: builds, bytes: [4])
    #expect(builds.value == 2 && second != first)
    #expect(files() == [(second as NSString).lastPathComponent])
  }

  @Test("a build that fails leaves nothing, and a dead build's temporary file is cleared")
  func failedBuild() throws {
    let error = #expect(throws: DatasetError.self) {
      try cache.entry(source: "/data/source", version: "v", name: "source") { writer throws(DatasetError) in
        try writer.write([1, 2])
        throw DatasetError(path: "/data/source", problem: "bad image", hint: "")
      }
    }
    #expect(error?.problem == "bad image")
    #expect(files().isEmpty)
    // A build killed midway leaves its temporary file: the next build, under the lock, removes it.
    let builds = Counter()
    let path = try entry(version: "v", builds: builds)
    writeFile([9], to: path.replacingOccurrences(of: "-\(DatasetCache.hex("v")).npy", with: "-old.npy.tmp-99999"))
    try FileManager.default.removeItem(atPath: path)
    _ = try entry(version: "v", builds: builds)
    #expect(files() == [(path as NSString).lastPathComponent])
  }

  @Test("a cache directory that cannot be written is an input error naming it")
  func unwritable() {
    writeFile([0], to: scratch.file("a-file"))
    let blocked = DatasetCache(directory: scratch.file("a-file") + "/cache")
    let error = #expect(throws: DatasetError.self) {
      try blocked.entry(source: "/data/source", version: "v", name: "source") { _ throws(DatasetError) in }
    }
    #expect(error?.path == scratch.file("a-file") + "/cache")
    #expect(error?.problem.hasPrefix("the cache directory cannot be created") == true)
    #expect(error?.hint == DatasetCache.hint)
  }

  @Test("the default place: --cache-dir, else XDG_CACHE_HOME, else ~/.cache")
  func defaultDirectory() {
    #expect(DatasetCache.resolve("/x", environment: ["XDG_CACHE_HOME": "/y"]).directory == "/x")
    #expect(DatasetCache.resolve(nil, environment: ["XDG_CACHE_HOME": "/y", "HOME": "/h"]).directory == "/y/ddp-train")
    #expect(DatasetCache.resolve(nil, environment: ["HOME": "/h"]).directory == "/h/.cache/ddp-train")
  }

  @Test("gzipped IDX images are decompressed once per host and mapped; plain ones are mapped where they lie")
  func idxFiles() throws {
    SmallDataset.write(into: scratch, gzipped: ["train-images-idx3-ubyte"])
    let options = DataOptions(cacheDirectory: cache.directory)
    let pair = try DatasetLoader.load(.mnist, directory: scratch.path, synthetic: SyntheticSpec(), options: options)
    #expect(pair.train.pixels == SmallDataset.trainPixels && pair.test.pixels == SmallDataset.testPixels)
    #expect(pair.train.samples.isMapped && pair.test.samples.isMapped)
    #expect(files().count == 1 && files()[0].hasPrefix("train-images-idx3-ubyte"))
    let copies = DataOptions(cacheDirectory: scratch.file("other-cache"), copies: .rank)
    let own = try DatasetLoader.load(.mnist, directory: scratch.path, synthetic: SyntheticSpec(), options: copies)
    #expect(own.train.pixels == SmallDataset.trainPixels && !own.train.samples.isMapped)
    #expect(!FileManager.default.fileExists(atPath: scratch.file("other-cache")), "rank copies write no cache")
  }
}
