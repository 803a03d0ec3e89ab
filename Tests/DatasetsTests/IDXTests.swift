import Foundation
import Testing

@testable import Datasets

@Suite("IDX files")
struct IDXTests {
  let directory = TemporaryDirectory()

  @Test("plain and gzip images and labels read back byte for byte")
  func roundTrip() throws {
    let pixels = IDXBytes.pixels(5 * 4 * 3)
    let images = IDXBytes.images(count: 5, rows: 4, columns: 3, pixels: pixels)
    let labels = IDXBytes.labels([0, 1, 9, 4, 4])
    writeFile(images, to: directory.file("images"))
    writeGzip(images, to: directory.file("images.gz"))
    writeFile(labels, to: directory.file("labels"))
    writeGzip(labels, to: directory.file("labels.gz"))
    for name in ["images", "images.gz"] {
      let read = try IDX.readImages(path: directory.file(name))
      #expect(read.count == 5 && read.rows == 4 && read.columns == 3)
      #expect(read.pixels == pixels)
    }
    for name in ["labels", "labels.gz"] {
      #expect(try IDX.readLabels(path: directory.file(name), classCount: 10) == [0, 1, 9, 4, 4])
    }
  }

  @Test("a gzip file of several MiB decodes across read chunks")
  func largeGzip() throws {
    let count = 3000
    let pixels = IDXBytes.pixels(count * 784, salt: 5)
    writeGzip(
      IDXBytes.images(count: count, rows: 28, columns: 28, pixels: pixels),
      to: directory.file("big.gz"))
    let read = try IDX.readImages(path: directory.file("big.gz"))
    #expect(read.count == count)
    #expect(read.pixels == pixels)
  }

  @Test("a missing file is named")
  func missingFile() {
    let path = directory.file("nothing-here")
    let error = #expect(throws: DatasetError.self) { try IDX.readImages(path: path) }
    #expect(error?.path == path)
    #expect(error?.problem.contains("cannot open") == true)
  }

  @Test("an empty file")
  func emptyFile() {
    for name in ["empty", "empty.gz"] {
      let path = directory.file(name)
      writeFile([], to: path)
      let error = #expect(throws: DatasetError.self) {
        try IDX.readLabels(path: path, classCount: 10)
      }
      #expect(error?.path == path)
      #expect(error?.problem.contains("empty") == true)
      #expect(error?.problem.contains("0 bytes") == true)
    }
  }

  @Test("a .gz file that is not gzip is refused, not passed through")
  func gzNotGzip() {
    let path = directory.file("plain-really.gz")
    writeFile(IDXBytes.labels([1, 2, 3]), to: path)
    let error = #expect(throws: DatasetError.self) {
      try IDX.readLabels(path: path, classCount: 10)
    }
    #expect(error?.path == path)
    #expect(error?.problem.contains("not gzip") == true)
    #expect(error?.problem.contains("expected magic bytes 1f 8b, found 00 00") == true)
  }

  @Test("a gzip stream with flipped bytes is corrupt")
  func corruptGzip() {
    let original = gzipBytes(
      IDXBytes.images(count: 40, rows: 28, columns: 28, pixels: IDXBytes.pixels(40 * 784)),
      scratch: directory)
    var damaged = original
    for offset in stride(from: 20, to: damaged.count - 20, by: 97) { damaged[offset] ^= 0x5a }
    let path = directory.file("corrupt.gz")
    writeFile(damaged, to: path)
    let error = #expect(throws: DatasetError.self) { try IDX.readImages(path: path) }
    #expect(error?.path == path)
    #expect(error?.problem.contains("corrupt") == true)
    #expect(error?.problem.contains("zlib") == true)
  }

  @Test("a gzip stream cut short is truncated, whether in the data or in the trailer")
  func truncatedGzip() {
    let original = gzipBytes(
      IDXBytes.images(count: 40, rows: 28, columns: 28, pixels: IDXBytes.pixels(40 * 784)),
      scratch: directory)
    // Half the compressed stream, then only the 8-byte CRC/size trailer missing.
    for (name, keep) in [("half.gz", original.count / 2), ("no-trailer.gz", original.count - 8)] {
      let path = directory.file(name)
      writeFile(Array(original.prefix(keep)), to: path)
      let error = #expect(throws: DatasetError.self) { try IDX.readImages(path: path) }
      #expect(error?.path == path)
      #expect(error?.problem.contains("gzip stream ends early") == true)
      #expect(error?.problem.contains("truncated") == true)
      #expect(error?.problem.contains("(zlib: unexpected end of file)") == true)
    }
  }

  @Test("wrong magic numbers, including swapped images and labels")
  func wrongMagic() {
    let labelsPath = directory.file("labels")
    writeFile(IDXBytes.labels([1, 2]), to: labelsPath)
    let asImages = #expect(throws: DatasetError.self) { try IDX.readImages(path: labelsPath) }
    #expect(asImages?.path == labelsPath)
    #expect(asImages?.problem.contains("expected 0x00000803") == true)
    #expect(asImages?.problem.contains("found 0x00000801") == true)
    #expect(asImages?.problem.contains("this looks like a labels file") == true)

    let imagesPath = directory.file("images")
    writeFile(IDXBytes.images(count: 1, rows: 1, columns: 1, pixels: [7]), to: imagesPath)
    let asLabels = #expect(throws: DatasetError.self) {
      try IDX.readLabels(path: imagesPath, classCount: 10)
    }
    #expect(asLabels?.problem.contains("expected 0x00000801") == true)
    #expect(asLabels?.problem.contains("this looks like an images file") == true)

    let otherPath = directory.file("float-images")
    writeFile(
      IDXBytes.images(count: 1, rows: 1, columns: 1, pixels: [0, 0, 0, 0], magic: 0x0000_0D03),
      to: otherPath)
    let other = #expect(throws: DatasetError.self) { try IDX.readImages(path: otherPath) }
    #expect(other?.problem.contains("found 0x00000d03") == true)
    #expect(other?.problem.contains("unsigned bytes") == true)

    let gzipPath = directory.file("gzip-without-suffix")
    writeFile(gzipBytes(IDXBytes.labels([1]), scratch: directory), to: gzipPath)
    let gzip = #expect(throws: DatasetError.self) {
      try IDX.readLabels(path: gzipPath, classCount: 10)
    }
    #expect(gzip?.problem.contains("looks like gzip data") == true)
  }

  @Test("a header shorter than its declared size")
  func shortHeader() {
    let path = directory.file("short")
    writeFile(IDXBytes.word(0x0000_0803) + [0, 0, 0], to: path)
    let error = #expect(throws: DatasetError.self) { try IDX.readImages(path: path) }
    #expect(error?.problem.contains("expected 16 bytes, found 7") == true)
  }

  @Test(
    "zero and absurd dimensions",
    arguments: [(0, 28, 28), (10, 0, 28), (10, 28, 0), (10, 100_000, 28)])
  func badDimensions(count: Int, rows: Int, columns: Int) {
    let path = directory.file("dims-\(count)-\(rows)-\(columns)")
    writeFile(
      IDXBytes.images(count: count, rows: rows, columns: columns, pixels: [1, 2, 3]), to: path)
    let error = #expect(throws: DatasetError.self) { try IDX.readImages(path: path) }
    #expect(error?.path == path)
    #expect(error?.problem.contains("declares \(count) images of \(rows)x\(columns)") == true)
  }

  @Test("zero labels")
  func zeroLabels() {
    let path = directory.file("no-labels")
    writeFile(IDXBytes.labels([]), to: path)
    let error = #expect(throws: DatasetError.self) {
      try IDX.readLabels(path: path, classCount: 10)
    }
    #expect(error?.problem.contains("declares 0 labels") == true)
  }

  @Test("truncated data, plain and gzip")
  func truncatedData() {
    let bytes = IDXBytes.images(
      count: 2, rows: 28, columns: 28, pixels: IDXBytes.pixels(2 * 784 - 100))
    writeFile(bytes, to: directory.file("short-images"))
    writeGzip(bytes, to: directory.file("short-images.gz"))
    for name in ["short-images", "short-images.gz"] {
      let path = directory.file(name)
      let error = #expect(throws: DatasetError.self) { try IDX.readImages(path: path) }
      #expect(error?.path == path)
      #expect(
        error?.problem.contains("expected 1568 bytes of pixels (2 images of 28x28), found 1468")
          == true)
    }
    writeFile(IDXBytes.labels([1, 2], count: 5), to: directory.file("short-labels"))
    let labels = #expect(throws: DatasetError.self) {
      try IDX.readLabels(path: directory.file("short-labels"), classCount: 10)
    }
    #expect(labels?.problem.contains("expected 5 bytes of labels, found 2") == true)
  }

  @Test("trailing garbage, plain and gzip")
  func trailingGarbage() {
    let bytes = IDXBytes.labels([1, 2, 3]) + [0xde, 0xad, 0xbe]
    writeFile(bytes, to: directory.file("long-labels"))
    writeGzip(bytes, to: directory.file("long-labels.gz"))
    for name in ["long-labels", "long-labels.gz"] {
      let path = directory.file(name)
      let error = #expect(throws: DatasetError.self) {
        try IDX.readLabels(path: path, classCount: 10)
      }
      #expect(error?.path == path)
      #expect(error?.problem.contains("trailing garbage") == true)
      #expect(error?.problem.contains("end after 11 bytes") == true)
      #expect(error?.problem.contains("found 3 more bytes") == true)
    }
  }

  @Test("a label out of range names its index, its value and classCount")
  func labelOutOfRange() {
    let path = directory.file("labels-out-of-range")
    writeFile(IDXBytes.labels([0, 9, 10, 3]), to: path)
    #expect(throws: Never.self) { try IDX.readLabels(path: path, classCount: 11) }
    let error = #expect(throws: DatasetError.self) {
      try IDX.readLabels(path: path, classCount: 10)
    }
    #expect(error?.path == path)
    #expect(error?.problem.contains("index 2 is 10") == true)
    #expect(error?.problem.contains("0..<10") == true)
    #expect(error?.problem.contains("classCount 10") == true)
  }

  @Test("description is path, problem and hint on one line")
  func descriptionFormat() {
    let error = DatasetError(path: "/a/b", problem: "it is wrong", hint: "Fix it")
    #expect(error.description == "/a/b: it is wrong. Fix it")
    #expect(!error.description.contains("\n"))
  }
}
