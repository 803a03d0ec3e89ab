import CZlib
import Foundation
import Testing

@testable import Inspection

/// A PNG decoded by the tests' own reader (only what `PNG.encode` writes: 8-bit truecolour, filter 0).
private struct DecodedPNG {
  var width: Int
  var height: Int
  var rgb: [UInt8]
  var chunkTypes: [String]

  func pixel(_ x: Int, _ y: Int) -> RGB {
    let offset = 3 * (y * width + x)
    return RGB(r: rgb[offset], g: rgb[offset + 1], b: rgb[offset + 2])
  }
}

/// CRC-32 bit by bit (reflected, polynomial 0xEDB88320, initial and final XOR 0xFFFFFFFF), independent of zlib.
private func naiveCRC32(_ bytes: [UInt8]) -> UInt32 {
  var crc: UInt32 = 0xFFFF_FFFF
  for byte in bytes {
    crc ^= UInt32(byte)
    for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
  }
  return ~crc
}

private func bigEndian(_ bytes: [UInt8], at offset: Int) -> UInt32 {
  bytes[offset..<(offset + 4)].reduce(0) { $0 << 8 | UInt32($1) }
}

/// Checks the signature, every chunk's CRC, the IHDR fields and the filter bytes, and returns the pixels.
private func decode(_ file: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> DecodedPNG {
  try #require(
    Array(file.prefix(8)) == [137, 80, 78, 71, 13, 10, 26, 10], "PNG signature", sourceLocation: sourceLocation)
  var offset = 8
  var types: [String] = []
  var header: [UInt8] = []
  var compressed: [UInt8] = []
  while offset < file.count {
    try #require(offset + 12 <= file.count, "truncated chunk", sourceLocation: sourceLocation)
    let length = Int(bigEndian(file, at: offset))
    try #require(offset + 12 + length <= file.count, "chunk runs past the end", sourceLocation: sourceLocation)
    let typeAndData = Array(file[(offset + 4)..<(offset + 8 + length)])
    let type = String(decoding: typeAndData.prefix(4), as: UTF8.self)
    let data = Array(typeAndData.dropFirst(4))
    let crc = bigEndian(file, at: offset + 8 + length)
    #expect(crc == naiveCRC32(typeAndData), "CRC of \(type)", sourceLocation: sourceLocation)
    types.append(type)
    if type == "IHDR" { header = data }
    if type == "IDAT" { compressed += data }
    offset += 12 + length
  }
  #expect(types.first == "IHDR" && types.last == "IEND", "chunk order \(types)", sourceLocation: sourceLocation)
  try #require(header.count == 13, "IHDR is 13 bytes", sourceLocation: sourceLocation)
  let width = Int(bigEndian(header, at: 0))
  let height = Int(bigEndian(header, at: 4))
  // Bit depth 8, colour type 2, compression 0, filter 0, interlace 0.
  #expect(Array(header[8...]) == [8, 2, 0, 0, 0], "IHDR format fields", sourceLocation: sourceLocation)

  let row = 1 + width * 3
  var raw = [UInt8](repeating: 0, count: height * row + 1)  // one spare byte: more data than expected shows up
  var rawLength = uLong(raw.count)
  let status = raw.withUnsafeMutableBufferPointer { out in
    compressed.withUnsafeBufferPointer { uncompress(out.baseAddress, &rawLength, $0.baseAddress, uLong($0.count)) }
  }
  try #require(status == Z_OK, "zlib uncompress status \(status)", sourceLocation: sourceLocation)
  try #require(Int(rawLength) == height * row, "inflated size", sourceLocation: sourceLocation)
  var rgb: [UInt8] = []
  for y in 0..<height {
    #expect(raw[y * row] == 0, "filter byte of row \(y)", sourceLocation: sourceLocation)
    rgb += raw[(y * row + 1)..<((y + 1) * row)]
  }
  return DecodedPNG(width: width, height: height, rgb: rgb, chunkTypes: types)
}

@Suite struct PNGTests {
  @Test func encodesTruecolourImageThatDecodesToTheSamePixels() throws {
    let (width, height) = (7, 5)
    // Distinct bytes everywhere (105 of them), so a swapped row, column or channel shows.
    let rgb = (0..<(width * height * 3)).map { UInt8(($0 * 37 + 11) % 256) }
    let decoded = try decode(PNG.encode(width: width, height: height, rgb: rgb))
    #expect(decoded.width == width && decoded.height == height)
    #expect(decoded.chunkTypes == ["IHDR", "IDAT", "IEND"])
    #expect(decoded.rgb == rgb)
  }

  @Test func encodesOnePixelAndGrayImages() throws {
    let single = try decode(PNG.encode(width: 1, height: 1, rgb: [1, 2, 3]))
    #expect(single.rgb == [1, 2, 3])
    let gray = try decode(PNG.encodeGray(width: 3, height: 2, gray: [0, 50, 100, 150, 200, 255]))
    #expect((gray.width, gray.height) == (3, 2))
    #expect(gray.rgb == [0, 50, 100, 150, 200, 255].flatMap { [$0, $0, $0] })
  }

  @Test func naiveCRCMatchesTheKnownCheckValue() {
    // The standard CRC-32 check value, so the tests' own CRC is right before it judges the encoder's.
    #expect(naiveCRC32(Array("123456789".utf8)) == 0xCBF4_3926)
  }
}

@Suite struct RasterImageTests {
  @Test func fontHasAGlyphForEveryPrintableCharacter() {
    #expect(BitmapFont.glyphs.count == 95 * 5)
    #expect(BitmapFont.columns(of: "é") == BitmapFont.columns(of: "?"))
    #expect(BitmapFont.columns(of: "\n") == BitmapFont.columns(of: "?"))
    #expect(BitmapFont.width(of: "Ankle boot", scale: 2) == 10 * 6 * 2)
  }

  @Test func drawTextSetsExactlyTheGlyphPixels() {
    // The classic font's "I": columns 0x00 0x41 0x7F 0x41 0x00 (bit 0 the top row): serifs top and bottom,
    // a full stem in the middle column.
    let columns: [UInt8] = [0x00, 0x41, 0x7F, 0x41, 0x00]
    #expect(Array(BitmapFont.columns(of: "I")) == columns)
    for scale in [1, 2] {
      var image = RasterImage(width: 20, height: 24, background: .black)
      let (left, top) = (6, 4)
      image.drawText("I", x: left, y: top, color: .white, scale: scale)
      var inkCount = 0
      for y in 0..<image.height {
        for x in 0..<image.width {
          let (column, row) = ((x - left) / scale, (y - top) / scale)
          let inGlyph = x >= left && y >= top && column < 5 && row < 7
          let ink = inGlyph && columns[column] >> UInt8(row) & 1 == 1
          if ink { inkCount += 1 }
          #expect(image.pixel(x: x, y: y) == (ink ? .white : .black), "(\(x), \(y)) at scale \(scale)")
        }
      }
      // 7 stem + 4 serif font pixels, each a scale×scale block.
      #expect(inkCount == 11 * scale * scale)
    }
  }

  @Test func drawingClipsToTheCanvas() {
    var image = RasterImage(width: 4, height: 4, background: .white)
    image.drawText("Hello", x: -3, y: -2, color: .black, scale: 2)
    image.fill(x: -5, y: 2, width: 100, height: 100, color: .red)
    image.strokeRect(x: -1, y: -1, width: 10, height: 10, color: .green, thickness: 2)
    image.drawGray([1, 0, 1, 0], width: 2, height: 2, atX: 3, y: 3, scale: 3)
    #expect(image.pixels.count == 4 * 4 * 3)
    #expect(image.pixel(x: 2, y: 3) == .red)
    #expect(image.pixel(x: 0, y: 3) == .green && image.pixel(x: 0, y: 0) == .green)
    #expect(image.pixel(x: 3, y: 3) == .white)  // value 1, not inverted
  }

  @Test func drawGrayEnlargesByNearestNeighbour() {
    let values: [Float] = [0, 0.5, 1, 0.25, 0.75, 2]  // 3×2; 2 is clamped to 1
    for (invert, expected) in [(false, [0, 128, 255, 64, 191, 255] as [UInt8]), (true, [255, 128, 0, 191, 64, 0])] {
      var image = RasterImage(width: 10, height: 8, background: .red)
      image.drawGray(values, width: 3, height: 2, atX: 1, y: 2, scale: 2, invert: invert)
      for y in 0..<image.height {
        for x in 0..<image.width {
          let inside = (1..<7).contains(x) && (2..<6).contains(y)
          guard inside else {
            #expect(image.pixel(x: x, y: y) == .red, "(\(x), \(y)) outside the blit")
            continue
          }
          // Every pixel of a 2×2 block has its source value.
          let level = expected[((y - 2) / 2) * 3 + (x - 1) / 2]
          #expect(image.pixel(x: x, y: y) == RGB(gray: level), "(\(x), \(y)), invert \(invert)")
        }
      }
    }
  }

  @Test func strokeRectDrawsABorderInside() throws {
    var image = RasterImage(width: 8, height: 8, background: .white)
    image.strokeRect(x: 1, y: 1, width: 6, height: 6, color: .black, thickness: 2)
    let decoded = try decode(image.png())
    for y in 0..<8 {
      for x in 0..<8 {
        let ring = min(x - 1, y - 1, 6 - x, 6 - y)  // distance inward from the rectangle's edge
        #expect(decoded.pixel(x, y) == ((0..<2).contains(ring) ? .black : .white), "(\(x), \(y))")
      }
    }
  }
}

@Suite struct PredictionGridTests {
  /// Three 4×4 tiles; the middle one wrong. Tile 0's top-left pixel is full ink.
  static let tiles: [PredictionGrid.Tile] = [
    .init(
      pixels: [1] + [Float](repeating: 0, count: 15), width: 4, height: 4, index: 12345, trueName: "T-shirt/top",
      predictedName: "T-shirt/top", probability: 0.9712, correct: true),
    .init(
      pixels: [Float](repeating: 0.5, count: 16), width: 4, height: 4, index: 7, trueName: "Ankle boot",
      predictedName: "Sneaker", probability: 0.614, correct: false),
    .init(
      pixels: (0..<16).map { Float($0) / 15 }, width: 4, height: 4, index: 8, trueName: "Bag",
      predictedName: "Bag", probability: 1, correct: true),
  ]

  @Test func labelsNameIndexClassesAndPercent() {
    #expect(Self.tiles[0].trueLine == "#12345 true: T-shirt/top")
    #expect(Self.tiles[0].predictedLine == "pred: T-shirt/top 97%")
    #expect(Self.tiles[1].predictedLine == "pred: Sneaker 61%")
    #expect(Self.tiles[2].predictedLine == "pred: Bag 100%")
  }

  @Test func pngHasTheLayoutSizeAndColouredBorders() throws {
    let decoded = try decode(PredictionGrid.png(Self.tiles))
    // Cell: pad 7 each side + the longest label, "#12345 true: T-shirt/top" (24 chars × 6 px) = 158 wide;
    // 7 + 12 (image, 4 px × 3) + 6 + 11 + 7 (two text lines) + 7 = 50 high. Three columns 8 apart and 12 px
    // margins: 12 + 3 × 158 + 2 × 8 + 12 = 514. Height: 38 (margin, 2× title, air) + 50 + 12 = 100.
    #expect((decoded.width, decoded.height) == (514, 100))
    let cellY = 38
    let cellX = [12, 12 + 166, 12 + 2 * 166]
    let middle = cellY + 25
    // Right tiles: a 2 px green border; the wrong one: 4 px red.
    for x in [cellX[0], cellX[0] + 1, cellX[2], cellX[2] + 1, cellX[0] + 157] {
      #expect(decoded.pixel(x, middle) == .green, "right tile's border at x \(x)")
    }
    #expect(decoded.pixel(cellX[0] + 3, middle) == .white)
    for x in cellX[1]..<(cellX[1] + 4) { #expect(decoded.pixel(x, middle) == .red, "wrong tile's border at x \(x)") }
    #expect(decoded.pixel(cellX[1] + 50, cellY + 1) == .red)
    #expect(decoded.pixel(cellX[1] + 4, middle) == .white)
    let green = decoded.pixel(cellX[0], middle)
    let red = decoded.pixel(cellX[1], middle)
    #expect(green.g > green.r && green.g > green.b && red.r > red.g && red.r > red.b)
    // Ink (1.0) is dark: tile 0's image starts centred, (158 − 12) / 2 = 73 px in, below the pad.
    let image = (x: cellX[0] + 73, y: cellY + 7)
    #expect((0..<3).allSatisfy { dx in (0..<3).allSatisfy { decoded.pixel(image.x + dx, image.y + $0) == .black } })
    #expect(decoded.pixel(image.x + 3, image.y) == .white)
    // The wrong tile's second label line is red, the right tiles' black.
    let predLine = cellY + 7 + 12 + 6 + 11
    func ink(_ cell: Int) -> Set<RGB> {
      var colours = Set<RGB>()
      for y in predLine..<(predLine + 7) {
        for x in (cellX[cell] + 7)..<(cellX[cell] + 151) { colours.insert(decoded.pixel(x, y)) }
      }
      return colours.subtracting([.white])
    }
    #expect(ink(0) == [.black])
    #expect(ink(1) == [.red])
  }

  @Test func emptyGridIsJustItsTitle() throws {
    let decoded = try decode(PredictionGrid.png([]))
    #expect((decoded.width, decoded.height) == (24 + 12 * 12, 38 + 12))  // "0 of 0 right" at 2×
  }

  @Test func svgEmbedsEachTileAsPNGAndEscapesLabels() throws {
    var tiles = Self.tiles
    tiles[2].predictedName = "A<B & \"C\""
    tiles[2].correct = false
    let svg = PredictionGrid.svg(tiles)
    #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"514\" height=\"100\""))
    #expect(svg.hasSuffix("</svg>\n"))
    #expect(svg.components(separatedBy: "<image").count - 1 == 3)
    #expect(svg.contains(">#12345 true: T-shirt/top</text>"))
    #expect(svg.contains(">1 of 3 right</text>"))
    #expect(svg.contains("pred: A&lt;B &amp; &quot;C&quot; 100%</text>"))
    #expect(!svg.contains("A<B"))
    // Wrong predictions' lines are red, right ones have no fill of their own.
    #expect(svg.contains("fill=\"#d62728\">pred: Sneaker 61%</text>"))
    #expect(svg.contains("y=\"81\">pred: T-shirt/top 97%</text>"))
    #expect(svg.components(separatedBy: "stroke=\"#d62728\"").count - 1 == 2)

    let images = svg.components(separatedBy: "href=\"data:image/png;base64,").dropFirst()
    #expect(images.count == 3)
    for part in images {
      let base64 = try #require(part.split(separator: "\"", maxSplits: 1).first)
      let bytes = try #require(Data(base64Encoded: String(base64)))
      #expect(Array(bytes.prefix(8)) == PNG.signature)
      let decoded = try decode(Array(bytes))
      #expect((decoded.width, decoded.height) == (12, 12))
    }
  }
}
