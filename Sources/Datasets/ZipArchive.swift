import CZlib
import Foundation

/// The members of a ZIP archive, as `numpy.savez` and `numpy.savez_compressed` write an `.npz`: one `.npy` per
/// array, stored (method 0) or deflated (method 8), found through the central directory at the end of the file.
///
///     local header (PK\3\4), name, extra, data ... | central directory: one entry (PK\1\2) per member |
///     [ZIP64 end record (PK\6\6), ZIP64 locator (PK\6\7)] | end record (PK\5\6), comment
///
/// NumPy writes its members with ZIP64 extra fields (`force_zip64`): a size or offset of 0xFFFFFFFF in a header
/// is then read from the extra field 0x0001, which holds the 8-byte values in the order uncompressed size,
/// compressed size, local header offset (only those that are 0xFFFFFFFF). The archive is mapped, not read.
final class ZipArchive {
  struct Member {
    var name: String
    /// 0 stored, 8 deflated.
    var method: Int
    var compressedSize: Int
    var size: Int
    var crc32: UInt32
    /// Where the member's (compressed) data begins in the archive.
    var dataOffset: Int
  }

  let path: String
  let file: MappedFile
  /// In the central directory's order.
  let members: [Member]

  init(path: String) throws(DatasetError) {
    self.path = path
    file = try MappedFile(path: path)
    members = try Self.readDirectory(file, path: path)
  }

  func member(named name: String) -> Member? { members.first { $0.name == name } }

  /// The member's data as stored in the archive: the array's bytes for a stored member, deflate data otherwise.
  func storedBytes(of member: Member) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(rebasing: file.bytes[member.dataOffset..<member.dataOffset + member.compressedSize])
  }

  /// Inflates a deflated member, handing its bytes to `sink` in order, in chunks, and checks its CRC-32. `sink`
  /// returns false to stop early (the rest is then neither inflated nor checked).
  func inflate(_ member: Member, into sink: (UnsafeRawBufferPointer) throws(DatasetError) -> Bool)
    throws(DatasetError)
  {
    let memberPath = "\(path):\(member.name)"
    func corrupt(_ problem: String) -> DatasetError {
      DatasetError(
        path: memberPath, problem: problem, hint: "Write the .npz again (numpy.savez or numpy.savez_compressed)")
    }
    let input = storedBytes(of: member)
    var stream = z_stream()
    guard ddp_inflate_init_raw(&stream) == Z_OK else { throw corrupt("zlib cannot start inflating") }
    defer { inflateEnd(&stream) }
    let chunk = 1 << 20
    let output = UnsafeMutablePointer<UInt8>.allocate(capacity: chunk)
    defer { output.deallocate() }
    stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: UInt8.self))
    var remaining = input.count
    var produced = 0
    var crc = crc32(0, nil, 0)
    var status = Z_OK
    while status != Z_STREAM_END {
      // avail_in is 32-bit: feed at most 1 GiB at a time.
      if stream.avail_in == 0 && remaining > 0 {
        stream.avail_in = UInt32(min(remaining, 1 << 30))
        remaining -= Int(stream.avail_in)
      }
      stream.next_out = output
      stream.avail_out = UInt32(chunk)
      status = CZlib.inflate(&stream, Z_NO_FLUSH)
      guard
        status == Z_OK || status == Z_STREAM_END || (status == Z_BUF_ERROR && stream.avail_in + UInt32(remaining) > 0)
      else {
        let detail = stream.msg.map { String(cString: $0) } ?? "status \(status)"
        throw corrupt(
          status == Z_BUF_ERROR
            ? "the deflated data ends early; the archive is truncated"
            : "the deflated data is corrupt (zlib: \(detail))")
      }
      let got = chunk - Int(stream.avail_out)
      guard produced + got <= member.size else {
        throw corrupt("inflates to more than the \(member.size) bytes the directory declares")
      }
      if got > 0 {
        crc = crc32(crc, output, UInt32(got))
        guard try sink(UnsafeRawBufferPointer(start: output, count: got)) else { return }
      }
      produced += got
      if status != Z_STREAM_END && got == 0 && stream.avail_in == 0 && remaining == 0 {
        throw corrupt("the deflated data ends early; the archive is truncated")
      }
    }
    guard produced == member.size else {
      throw corrupt("inflates to \(produced) bytes; the directory declares \(member.size)")
    }
    guard UInt32(crc) == member.crc32 else {
      throw corrupt(
        "CRC-32 mismatch: the data gives \(String(format: "%08x", UInt32(crc))), the directory says "
          + String(format: "%08x", member.crc32))
    }
  }

  private static func readDirectory(_ file: MappedFile, path: String) throws(DatasetError) -> [Member] {
    let bytes = file.bytes
    func fail(_ problem: String) -> DatasetError {
      DatasetError(
        path: path, problem: problem,
        hint: "Write the file with numpy.savez or numpy.savez_compressed, and check that it was copied whole")
    }
    func u16(_ offset: Int) -> Int {
      Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }
    func u32(_ offset: Int) -> Int {
      Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
    }
    func u64(_ offset: Int) -> Int {
      let value = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
      return value > UInt64(Int.max) ? Int.max : Int(value)
    }
    // The end record is the last 22 bytes, unless a comment (at most 65535 bytes) follows it.
    guard bytes.count >= 22 else { throw fail("too short for a ZIP archive (\(bytes.count) bytes); expected an .npz") }
    var end = -1
    for offset in stride(from: bytes.count - 22, through: max(0, bytes.count - 22 - 65535), by: -1)
    where u32(offset) == 0x0605_4b50 && offset + 22 + u16(offset + 20) == bytes.count {
      end = offset
      break
    }
    guard end >= 0 else {
      throw fail("not a ZIP archive: no end of central directory record (an .npz is a ZIP of .npy files)")
    }
    var entryCount = u16(end + 10)
    var directorySize = u32(end + 12)
    var directoryOffset = u32(end + 16)
    if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
      // ZIP64: a 20-byte locator just before the end record points at the ZIP64 end record.
      guard end >= 20, u32(end - 20) == 0x0706_4b50 else {
        throw fail("the end record asks for ZIP64 values but there is no ZIP64 locator")
      }
      let record = u64(end - 20 + 8)
      guard record <= bytes.count - 56, u32(record) == 0x0606_4b50 else {
        throw fail("the ZIP64 end of central directory record is missing or damaged")
      }
      entryCount = u64(record + 32)
      directorySize = u64(record + 40)
      directoryOffset = u64(record + 48)
    }
    guard directoryOffset <= bytes.count, directorySize <= bytes.count - directoryOffset else {
      throw fail("the central directory lies beyond the end of the file; the archive is truncated")
    }
    var members: [Member] = []
    var offset = directoryOffset
    for _ in 0..<entryCount {
      guard offset + 46 <= directoryOffset + directorySize, u32(offset) == 0x0201_4b50 else {
        throw fail("the central directory is damaged (entry \(members.count))")
      }
      let (flags, method) = (u16(offset + 8), u16(offset + 10))
      let crc = UInt32(u32(offset + 16))
      var compressed = u32(offset + 20)
      var size = u32(offset + 24)
      let (nameLength, extraLength, commentLength) = (u16(offset + 28), u16(offset + 30), u16(offset + 32))
      var localOffset = u32(offset + 42)
      let nameStart = offset + 46
      guard nameStart + nameLength + extraLength + commentLength <= bytes.count else {
        throw fail("the central directory is damaged (entry \(members.count))")
      }
      let name = String(decoding: bytes[nameStart..<nameStart + nameLength], as: UTF8.self)
      // The ZIP64 extra field: 8-byte values for those of the three that are 0xFFFFFFFF, in order.
      var extra = nameStart + nameLength
      let extraEnd = extra + extraLength
      while extra + 4 <= extraEnd {
        let (id, length) = (u16(extra), u16(extra + 2))
        if id == 0x0001 {
          var field = extra + 4
          // A damaged length must not carry the reads past the entry's own extra field.
          let fieldEnd = min(field + length, extraEnd)
          func widen(_ value: inout Int) {
            guard value == 0xFFFF_FFFF, field + 8 <= fieldEnd else { return }
            value = u64(field)
            field += 8
          }
          widen(&size)
          widen(&compressed)
          widen(&localOffset)
        }
        extra += 4 + length
      }
      guard flags & 1 == 0 else { throw fail("member \(name) is encrypted; expected a plain .npz") }
      guard method == 0 || method == 8 else {
        throw fail("member \(name) is compressed with method \(method); expected stored (0) or deflated (8)")
      }
      guard localOffset <= bytes.count - 30, u32(localOffset) == 0x0403_4b50 else {
        throw fail("the local header of member \(name) is missing; the archive is truncated or damaged")
      }
      // The local header's own name and extra lengths (its extra field may differ from the directory's).
      let dataOffset = localOffset + 30 + u16(localOffset + 26) + u16(localOffset + 28)
      guard dataOffset <= bytes.count, compressed <= bytes.count - dataOffset else {
        throw fail(
          "member \(name) declares \(compressed) bytes of data but the file ends \(bytes.count - min(dataOffset, bytes.count)) bytes after its header; the archive is truncated"
        )
      }
      members.append(
        Member(
          name: name, method: method, compressedSize: compressed, size: size, crc32: crc, dataOffset: dataOffset))
      offset = extraEnd + commentLength
    }
    return members
  }
}
