import Foundation

/// The element type of a NumPy array, from its `descr` string: a byte-order character (`<` little, `>` big, `|` not
/// applicable, `=` native), a kind (`u` unsigned, `i` signed integer, `f` float, `b` bool, others) and a size in
/// bytes, e.g. `<f4`, `|u1`, `>i8`.
public struct NumPyType: Equatable, Sendable, CustomStringConvertible {
  public enum Kind: Character, Sendable {
    case unsignedInteger = "u"
    case signedInteger = "i"
    case float = "f"
    case bool = "b"
  }

  public var kind: Kind
  public var size: Int
  public var bigEndian: Bool

  /// Parses a simple `descr`; nil for structured, string, complex and other types this trainer has no use for.
  init?(descr: String) {
    let characters = Array(descr)
    guard characters.count >= 3, let order = characters.first, "<>|=".contains(order),
      let kind = Kind(rawValue: characters[1]), let size = Int(String(characters[2...])), [1, 2, 4, 8].contains(size)
    else { return nil }
    self.kind = kind
    self.size = size
    bigEndian = order == ">" && size > 1
  }

  public var description: String {
    let name: String
    switch kind {
    case .unsignedInteger: name = "uint\(size * 8)"
    case .signedInteger: name = "int\(size * 8)"
    case .float: name = "float\(size * 8)"
    case .bool: name = "bool"
    }
    return name + (bigEndian ? " (big-endian)" : "")
  }

  /// uint8 and float32 (either byte order): the two element types samples can be held in.
  var pixelFormat: PixelFormat? {
    switch (kind, size) {
    case (.unsignedInteger, 1): return .uint8
    case (.float, 4): return .float32
    default: return nil
    }
  }

  /// Element `index` of `bytes` (stored in this type) as an integer; for label arrays of any integer type.
  func integer(at index: Int, of bytes: UnsafeRawBufferPointer) -> Int64 {
    let offset = index * size
    func load<T: FixedWidthInteger>(_: T.Type) -> T {
      let raw = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
      return bigEndian ? T(bigEndian: raw) : T(littleEndian: raw)
    }
    switch (kind, size) {
    case (.unsignedInteger, 1), (.bool, 1): return Int64(load(UInt8.self))
    case (.unsignedInteger, 2): return Int64(load(UInt16.self))
    case (.unsignedInteger, 4): return Int64(load(UInt32.self))
    case (.unsignedInteger, 8):
      let value = load(UInt64.self)
      return value > UInt64(Int64.max) ? -1 : Int64(value)
    case (.signedInteger, 1): return Int64(load(Int8.self))
    case (.signedInteger, 2): return Int64(load(Int16.self))
    case (.signedInteger, 4): return Int64(load(Int32.self))
    case (.signedInteger, 8): return load(Int64.self)
    default: preconditionFailure("integer(at:) needs an integer type")
    }
  }
}

/// The header of a `.npy` array, NumPy's format for one array:
///
///     "\x93NUMPY", major version, minor version (1 byte each),
///     the header's length: 2 bytes little-endian (version 1) or 4 (versions 2 and 3),
///     the header: a Python dict literal, ASCII (versions 1 and 2) or UTF-8 (version 3), e.g.
///         {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }
///     padded with spaces and ending in "\n", so that the data starts at a multiple of 64 bytes (16 in old files),
///     then the data: the elements in C order (last axis fastest), or Fortran order (first axis fastest) when
///     `fortran_order` is True.
public struct NumPyHeader: Equatable, Sendable {
  public var type: NumPyType
  public var fortranOrder: Bool
  public var shape: [Int]
  /// Where the data begins, from the start of the file.
  public var dataOffset: Int

  public var elementCount: Int { shape.reduce(1, *) }
  public var dataByteCount: Int { elementCount * type.size }

  static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

  /// Parses the header at the start of `bytes` (the file, or its first bytes: at most the header is read).
  /// Every problem names `path` (a file, or `FILE.npz:member.npy`).
  public static func parse(_ bytes: UnsafeRawBufferPointer, path: String) throws(DatasetError) -> NumPyHeader {
    func fail(_ problem: String) -> DatasetError {
      DatasetError(
        path: path, problem: problem,
        hint: "Write the array with numpy.save (or numpy.savez for a .npz) and check that the file is complete")
    }
    guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
      throw fail("not a NumPy .npy array (expected the magic bytes \\x93NUMPY at the start)")
    }
    let major = bytes[6]
    let headerLength: Int
    let lengthBytes: Int
    switch major {
    case 1:
      lengthBytes = 2
      headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
    case 2, 3:
      lengthBytes = 4
      guard bytes.count >= 12 else { throw fail("the file ends inside its header") }
      headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
    default:
      throw fail("format version \(major).\(bytes[7]); expected version 1, 2 or 3")
    }
    let start = 8 + lengthBytes
    guard bytes.count >= start + headerLength else {
      throw fail("the file ends inside its header (\(headerLength) bytes declared, \(bytes.count - start) present)")
    }
    guard let text = String(bytes: bytes[start..<start + headerLength], encoding: major == 3 ? .utf8 : .ascii) else {
      throw fail("the header is not \(major == 3 ? "UTF-8" : "ASCII") text")
    }
    var literal = PythonLiteral(text)
    guard case .dictionary(let entries)? = literal.parse() else {
      throw fail("the header is not a Python dict literal: \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
    }
    guard case .string(let descr)? = entries["descr"] else {
      throw fail("the header has no simple 'descr' (found \(entries["descr"].map { "\($0)" } ?? "none"))")
    }
    guard let type = NumPyType(descr: descr) else {
      throw DatasetError(
        path: path, problem: "the array's dtype is '\(descr)'; expected a number type (uint8, int64, float32, ...)",
        hint: "Save images as uint8 or float32 and labels as an integer type")
    }
    guard case .bool(let fortranOrder)? = entries["fortran_order"] else {
      throw fail("the header has no 'fortran_order' True or False")
    }
    guard case .tuple(let shape)? = entries["shape"], shape.allSatisfy({ $0 >= 0 }) else {
      throw fail("the header has no 'shape' tuple of sizes")
    }
    let (elements, overflow) = shape.reduce((1, false)) { partial, size in
      let product = partial.0.multipliedReportingOverflow(by: size)
      return (product.partialValue, partial.1 || product.overflow)
    }
    guard !overflow, !elements.multipliedReportingOverflow(by: type.size).overflow else {
      throw fail("the shape \(shape) is too large")
    }
    return NumPyHeader(type: type, fortranOrder: fortranOrder, shape: shape, dataOffset: start + headerLength)
  }

  /// A version 1 header for a C-ordered array of `type` and `shape`, padded so that the data starts at a multiple
  /// of 64 bytes, as `numpy.save` writes it.
  static func encode(descr: String, shape: [Int]) -> [UInt8] {
    let sizes = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var dictionary = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(sizes), }"
    let unpadded = 10 + dictionary.utf8.count + 1
    dictionary += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    let length = dictionary.utf8.count
    return magic + [1, 0, UInt8(length & 0xff), UInt8(length >> 8)] + Array(dictionary.utf8)
  }
}

/// The Python literals of a `.npy` header: a dict of string keys whose values are strings, booleans or tuples of
/// integers. Nothing else is needed, and nothing else is accepted.
private struct PythonLiteral {
  enum Value: CustomStringConvertible {
    case string(String)
    case bool(Bool)
    case tuple([Int])
    case dictionary([String: Value])

    var description: String {
      switch self {
      case .string(let text): return "'\(text)'"
      case .bool(let value): return value ? "True" : "False"
      case .tuple(let sizes): return "(" + sizes.map(String.init).joined(separator: ", ") + ")"
      case .dictionary: return "a dict"
      }
    }
  }

  private let characters: [Character]
  private var position = 0

  init(_ text: String) { characters = Array(text) }

  mutating func parse() -> Value? {
    let value = parseValue()
    skipSpace()
    return position == characters.count ? value : nil
  }

  private mutating func skipSpace() {
    while position < characters.count, characters[position].isWhitespace { position += 1 }
  }

  private mutating func consume(_ character: Character) -> Bool {
    skipSpace()
    guard position < characters.count, characters[position] == character else { return false }
    position += 1
    return true
  }

  private mutating func parseValue() -> Value? {
    skipSpace()
    guard position < characters.count else { return nil }
    switch characters[position] {
    case "{": return parseDictionary()
    case "(": return parseTuple()
    case "'", "\"": return parseString().map(Value.string)
    default:
      for (word, value) in [("True", true), ("False", false)] where characters[position...].starts(with: word) {
        position += word.count
        return .bool(value)
      }
      return nil
    }
  }

  private mutating func parseString() -> String? {
    let quote = characters[position]
    position += 1
    var text = ""
    while position < characters.count, characters[position] != quote {
      text.append(characters[position])
      position += 1
    }
    guard position < characters.count else { return nil }
    position += 1
    return text
  }

  private mutating func parseTuple() -> Value? {
    position += 1
    var sizes: [Int] = []
    while !consume(")") {
      skipSpace()
      var digits = ""
      while position < characters.count, characters[position].isNumber || characters[position] == "L" {
        if characters[position] != "L" { digits.append(characters[position]) }
        position += 1
      }
      guard let size = Int(digits) else { return nil }
      sizes.append(size)
      if !consume(",") {
        guard consume(")") else { return nil }
        break
      }
    }
    return .tuple(sizes)
  }

  private mutating func parseDictionary() -> Value? {
    position += 1
    var entries: [String: Value] = [:]
    while !consume("}") {
      skipSpace()
      guard position < characters.count, "'\"".contains(characters[position]), let key = parseString(),
        consume(":"), let value = parseValue()
      else { return nil }
      entries[key] = value
      if !consume(",") {
        guard consume("}") else { return nil }
        break
      }
    }
    return .dictionary(entries)
  }
}
