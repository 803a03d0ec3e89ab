import CZlib

/// A minimal PNG writer: 8-bit truecolour, no interlace, no filtering, so that pictures need nothing beyond zlib.
///
/// The file is the 8-byte signature and three chunks: IHDR (size and pixel format), one IDAT (the zlib stream of
/// all scanlines) and IEND. Each chunk is `length (4 bytes, big-endian) · type (4 ASCII bytes) · data · CRC-32 of
/// type and data`. Filter type 0 ("None") on every scanline keeps the encoder trivial; deflate at level 9 still
/// squeezes the flat backgrounds of charts and grids well.
public enum PNG {
  /// The eight bytes every PNG file starts with.
  public static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

  /// A PNG of `width`×`height` pixels from `rgb`: row-major, top row first, 3 bytes (R, G, B) per pixel,
  /// so exactly `width * height * 3` bytes. Both sides must be at least 1 (PNG allows no empty image).
  public static func encode(width: Int, height: Int, rgb: [UInt8]) -> [UInt8] {
    precondition(width > 0 && height > 0, "PNG: an image needs at least one pixel, got \(width)×\(height)")
    precondition(width <= Int(Int32.max) && height <= Int(Int32.max), "PNG: sides must fit in 31 bits")
    precondition(rgb.count == width * height * 3, "PNG: \(width)×\(height) RGB needs \(width * height * 3) bytes")

    var header: [UInt8] = []
    header.appendBigEndian(UInt32(width))
    header.appendBigEndian(UInt32(height))
    // Bit depth 8, colour type 2 (truecolour), compression 0 (deflate), filter method 0, no interlace.
    header += [8, 2, 0, 0, 0]

    var file = signature
    appendChunk("IHDR", header, to: &file)
    appendChunk("IDAT", deflate(scanlines(width: width, height: height, rgb: rgb)), to: &file)
    appendChunk("IEND", [], to: &file)
    return file
  }

  /// A PNG of a grayscale image: `gray` is row-major, one byte per pixel (0 black, 255 white), `width * height`
  /// bytes. Stored as truecolour with R = G = B, so it goes through the same encoder.
  public static func encodeGray(width: Int, height: Int, gray: [UInt8]) -> [UInt8] {
    precondition(gray.count == width * height, "PNG: \(width)×\(height) gray needs \(width * height) bytes")
    var rgb = [UInt8](repeating: 0, count: gray.count * 3)
    for (offset, value) in gray.enumerated() {
      rgb[3 * offset] = value
      rgb[3 * offset + 1] = value
      rgb[3 * offset + 2] = value
    }
    return encode(width: width, height: height, rgb: rgb)
  }

  /// The raw image data PNG compresses: each row of `width * 3` bytes prefixed by its filter byte (0, none).
  static func scanlines(width: Int, height: Int, rgb: [UInt8]) -> [UInt8] {
    let row = width * 3
    var raw: [UInt8] = []
    raw.reserveCapacity(height * (row + 1))
    for y in 0..<height {
      raw.append(0)
      raw += rgb[(y * row)..<((y + 1) * row)]
    }
    return raw
  }

  /// A zlib stream (header, deflate data, Adler-32) of `bytes`, as IDAT wants it.
  static func deflate(_ bytes: [UInt8]) -> [UInt8] {
    var capacity = compressBound(uLong(bytes.count))
    var output = [UInt8](repeating: 0, count: Int(capacity))
    let status = output.withUnsafeMutableBufferPointer { out in
      bytes.withUnsafeBufferPointer { input in
        compress2(out.baseAddress, &capacity, input.baseAddress, uLong(bytes.count), 9)
      }
    }
    // compressBound is a guaranteed bound, so only running out of memory can fail here.
    precondition(status == Z_OK, "PNG: zlib compress2 failed with status \(status)")
    return Array(output.prefix(Int(capacity)))
  }

  /// Appends one chunk: length, type, data, and the CRC-32 of type and data.
  static func appendChunk(_ type: String, _ data: [UInt8], to file: inout [UInt8]) {
    let typeBytes = Array(type.utf8)
    precondition(typeBytes.count == 4, "PNG: chunk types are four letters")
    file.appendBigEndian(UInt32(data.count))
    let checked = typeBytes + data
    file += checked
    let crc = checked.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
    file.appendBigEndian(UInt32(truncatingIfNeeded: crc))
  }
}

extension Array where Element == UInt8 {
  /// PNG stores every multi-byte integer most significant byte first.
  fileprivate mutating func appendBigEndian(_ value: UInt32) {
    append(UInt8(truncatingIfNeeded: value >> 24))
    append(UInt8(truncatingIfNeeded: value >> 16))
    append(UInt8(truncatingIfNeeded: value >> 8))
    append(UInt8(truncatingIfNeeded: value))
  }
}
