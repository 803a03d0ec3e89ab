import Foundation

/// The safetensors format: 8-byte little-endian header length N, N bytes of JSON header (padded with spaces
/// to a multiple of 8), then the raw little-endian data. Header: {"__metadata__": {string: string}, name:
/// {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...}; offsets relative to the data start.
///
/// F32 and I64 are read and written: the trainer's Float32 buffers as they are, and a batch norm's
/// num_batches_tracked as PyTorch keeps it.
/// Readers: Python's `safetensors.torch.load_file` / `safetensors.numpy.load_file`, and `decode` here.
public enum SafeTensors {
  static let metadataKey = "__metadata__"
  static let hint =
    "Expected an F32/I64 safetensors file as ddp-train or Python's safetensors writes it; use another checkpoint"

  /// Tensors stored in the given order, contiguous.
  ///
  /// The header lists `__metadata__` first (keys sorted; left out when `metadata` is empty), then the
  /// tensors in the given order, so equal inputs give equal bytes. Names must be unique and not
  /// `__metadata__`, and each `values.count` must be the product of its `shape` (programmer mistakes).
  public static func encode(_ tensors: [NamedTensor], metadata: [String: String]) -> [UInt8] {
    var fields: [String] = []
    if !metadata.isEmpty {
      let entries = metadata.sorted { $0.key < $1.key }.map {
        jsonString($0.key) + ":" + jsonString($0.value)
      }
      fields.append(jsonString(metadataKey) + ":{" + entries.joined(separator: ",") + "}")
    }
    var names = Set<String>()
    var offset = 0
    for tensor in tensors {
      precondition(tensor.name != metadataKey, "a tensor cannot be named \(metadataKey)")
      precondition(names.insert(tensor.name).inserted, "duplicate tensor name \(tensor.name)")
      precondition(
        tensor.shape.allSatisfy { $0 >= 0 } && tensor.shape.reduce(1, *) == tensor.count,
        "tensor \(tensor.name): shape \(tensor.shape) does not hold \(tensor.count) values")
      let end = offset + tensor.dtype.byteCount * tensor.count
      let shape = tensor.shape.map(String.init).joined(separator: ",")
      fields.append(
        jsonString(tensor.name)
          + #":{"dtype":"\#(tensor.dtype.rawValue)","shape":[\#(shape)],"data_offsets":[\#(offset),\#(end)]}"#)
      offset = end
    }
    var header = Array(("{" + fields.joined(separator: ",") + "}").utf8)
    // Spaces, as the reference writer pads: the data then starts 8-byte aligned.
    while header.count % 8 != 0 { header.append(0x20) }

    var bytes: [UInt8] = []
    bytes.reserveCapacity(8 + header.count + offset)
    withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes.append(contentsOf: $0) }
    bytes.append(contentsOf: header)
    for tensor in tensors {
      #if _endian(little)
        tensor.values.withUnsafeBytes { bytes.append(contentsOf: $0) }
        tensor.integers.withUnsafeBytes { bytes.append(contentsOf: $0) }
      #else
        for value in tensor.values {
          withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
        }
        for value in tensor.integers { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
      #endif
    }
    return bytes
  }

  /// Validates everything (see below) and returns the tensors in data order, plus the metadata.
  ///
  /// Rejected, each with a `CheckpointError` naming `path` and saying what was expected and found:
  /// a file shorter than 8 bytes; a header length past the end of the file; a header that is not UTF-8,
  /// not JSON, or not a JSON object; duplicate names; `__metadata__` that is not a string → string object;
  /// an entry that is not an object or lacks `dtype`, `shape` or `data_offsets`, or has them with the wrong
  /// JSON types (booleans and fractions are not integers); a dtype other than F32 and I64; a shape whose element
  /// count × 4 (× 8 for I64) differs from `end - begin`; offsets that overlap, leave a gap, or do not cover the data
  /// region exactly (a truncated file, trailing bytes).
  public static func decode(_ bytes: [UInt8], path: String) throws(CheckpointError) -> (
    tensors: [NamedTensor], metadata: [String: String]
  ) {
    func failure(_ problem: String) -> CheckpointError {
      CheckpointError(path: path, problem: problem, hint: hint)
    }

    guard bytes.count >= 8 else {
      throw failure(
        "the file is \(bytes.count) bytes long, shorter than the 8-byte safetensors header length")
    }
    let headerLength = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    guard headerLength <= UInt64(bytes.count - 8) else {
      throw failure(
        "the header length \(headerLength) runs past the end of the file (\(bytes.count) bytes, "
          + "so at most \(bytes.count - 8) bytes of header)")
    }
    let dataStart = 8 + Int(headerLength)
    let headerBytes = bytes[8..<dataStart]
    guard String(validating: headerBytes, as: UTF8.self) != nil else {
      throw failure("the \(headerLength)-byte header is not valid UTF-8")
    }
    let parsed: Any
    do {
      parsed = try JSONSerialization.jsonObject(with: Data(headerBytes), options: .fragmentsAllowed)
    } catch {
      throw failure("the \(headerLength)-byte header is not valid JSON")
    }
    guard let header = parsed as? [String: Any] else {
      throw failure("the header is JSON \(describe(parsed)), expected an object")
    }
    // JSONSerialization keeps one value per repeated key, so repeats are found in the text itself.
    var seen = Set<String>()
    for key in topLevelKeys(headerBytes) where !seen.insert(key).inserted {
      throw failure("the header names \"\(key)\" more than once")
    }

    var metadata: [String: String] = [:]
    if let value = header[metadataKey] {
      guard let object = value as? [String: Any] else {
        throw failure("\(metadataKey) is \(describe(value)), expected an object of strings")
      }
      for (key, value) in object {
        guard let string = value as? String else {
          throw failure("\(metadataKey) entry \"\(key)\" is \(describe(value)), expected a string")
        }
        metadata[key] = string
      }
    }

    struct Entry {
      var name: String
      var shape: [Int]
      var dtype: NamedTensor.DType
      var begin: Int
      var end: Int
    }
    var entries: [Entry] = []
    for (name, value) in header where name != metadataKey {
      func field(_ key: String) throws(CheckpointError) -> Any {
        guard let object = value as? [String: Any] else {
          throw failure(
            "tensor \"\(name)\" is \(describe(value)), expected an object with dtype, shape and data_offsets"
          )
        }
        guard let field = object[key] else { throw failure("tensor \"\(name)\" has no \(key)") }
        return field
      }
      func integers(_ key: String) throws(CheckpointError) -> [Int] {
        let value = try field(key)
        guard let array = value as? [Any] else {
          throw failure(
            "tensor \"\(name)\": \(key) is \(describe(value)), expected an array of integers")
        }
        var result: [Int] = []
        for element in array {
          guard let integer = nonNegativeInteger(element) else {
            throw failure(
              "tensor \"\(name)\": \(key) holds \(describe(element)), expected non-negative integers"
            )
          }
          result.append(integer)
        }
        return result
      }

      let dtype = try field("dtype")
      guard let dtypeName = dtype as? String else {
        throw failure("tensor \"\(name)\": dtype is \(describe(dtype)), expected a string")
      }
      guard let elementType = NamedTensor.DType(rawValue: dtypeName) else {
        throw failure("tensor \"\(name)\" has dtype \(dtypeName), but only F32 and I64 are supported")
      }
      let shape = try integers("shape")
      let offsets = try integers("data_offsets")
      guard offsets.count == 2 else {
        throw failure(
          "tensor \"\(name)\": data_offsets has \(offsets.count) numbers, expected [begin, end]")
      }
      let (begin, end) = (offsets[0], offsets[1])
      guard begin <= end else {
        throw failure("tensor \"\(name)\": data_offsets [\(begin), \(end)] end before they begin")
      }
      var byteCount = elementType.byteCount
      for dimension in shape {
        let (product, overflow) = byteCount.multipliedReportingOverflow(by: dimension)
        guard !overflow else { throw failure("tensor \"\(name)\": shape \(shape) is too large") }
        byteCount = product
      }
      guard byteCount == end - begin else {
        throw failure(
          "tensor \"\(name)\": shape \(shape) needs \(byteCount) bytes of \(dtypeName), "
            + "but data_offsets [\(begin), \(end)] span \(end - begin)")
      }
      entries.append(Entry(name: name, shape: shape, dtype: elementType, begin: begin, end: end))
    }

    // Note [Exact cover]: sorted by offset, each tensor must start where the previous one ended, the first
    // at 0 and the last ending at the end of the file, as the reference reader demands. This rejects
    // out-of-bounds and overlapping offsets, gaps, truncated data and trailing bytes alike.
    entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
    let dataLength = bytes.count - dataStart
    var covered = 0
    var previous: String?
    for entry in entries {
      guard entry.end <= dataLength else {
        throw failure(
          "tensor \"\(entry.name)\" needs data bytes \(entry.begin)..<\(entry.end), but the data region "
            + "has only \(dataLength) bytes (the file is truncated or the offsets are out of bounds)"
        )
      }
      guard entry.begin >= covered else {
        throw failure(
          "tensor \"\(entry.name)\" at data bytes \(entry.begin)..<\(entry.end) overlaps "
            + "tensor \"\(previous ?? "")\", which ends at \(covered)")
      }
      guard entry.begin == covered else {
        throw failure(
          "data bytes \(covered)..<\(entry.begin) belong to no tensor (expected tensors to be contiguous)"
        )
      }
      covered = entry.end
      previous = entry.name
    }
    guard covered == dataLength else {
      throw failure(
        "the data region has \(dataLength) bytes but the tensors cover only \(covered) "
          + "(trailing bytes, or offsets that do not match the file)")
    }

    let tensors = bytes.withUnsafeBytes { raw in
      entries.map { entry in
        let start = dataStart + entry.begin
        if entry.dtype == .i64 {
          let integers = (0..<(entry.end - entry.begin) / 8).map { index in
            Int64(littleEndian: raw.loadUnaligned(fromByteOffset: start + 8 * index, as: Int64.self))
          }
          return NamedTensor(name: entry.name, shape: entry.shape, integers: integers)
        }
        let values = (0..<(entry.end - entry.begin) / 4).map { index in
          Float(
            bitPattern: UInt32(
              littleEndian: raw.loadUnaligned(fromByteOffset: start + 4 * index, as: UInt32.self)))
        }
        return NamedTensor(name: entry.name, shape: entry.shape, values: values)
      }
    }
    return (tensors, metadata)
  }

  /// A JSON integer ≥ 0 as JSONSerialization returns it: an NSNumber of an integer type. Booleans (which
  /// JSONSerialization also makes NSNumbers, of type "c") and numbers written with a fraction or exponent
  /// (type "d") are not integers, whatever their value.
  static func nonNegativeInteger(_ value: Any) -> Int? {
    guard !(value is String), let number = value as? NSNumber else { return nil }
    switch String(cString: number.objCType) {
    case "s", "i", "l", "q":
      return number.int64Value >= 0 ? Int(exactly: number.int64Value) : nil
    case "S", "I", "L", "Q":
      return Int(exactly: number.uint64Value)
    default:
      return nil
    }
  }

  /// Says what kind of JSON value `value` is, for error messages ("a string", "the number 2.5").
  static func describe(_ value: Any) -> String {
    switch value {
    case let string as String: return "the string \"\(string.prefix(40))\""
    case is [Any]: return "an array"
    case is [String: Any]: return "an object"
    case is NSNull: return "null"
    case let number as NSNumber:
      return String(cString: number.objCType) == "c"
        ? "the boolean \(number.boolValue)" : "the number \(number)"
    default: return "\(type(of: value))"
    }
  }

  /// The keys of the top-level object of `json` (known to be a valid JSON object), in order and with
  /// repeats, each decoded from its JSON string literal.
  static func topLevelKeys(_ json: ArraySlice<UInt8>) -> [String] {
    let quote = UInt8(ascii: "\"")
    let backslash = UInt8(ascii: "\\")
    var keys: [String] = []
    var depth = 0
    var inString = false
    var escaped = false
    var expectingKey = false
    var keyStart: Int?
    for index in json.indices {
      let byte = json[index]
      if inString {
        if escaped {
          escaped = false
        } else if byte == backslash {
          escaped = true
        } else if byte == quote {
          inString = false
          if let start = keyStart {
            let literal = Data(json[start...index])
            keys.append(
              (try? JSONSerialization.jsonObject(with: literal, options: .fragmentsAllowed))
                as? String ?? "")
            keyStart = nil
          }
        }
        continue
      }
      switch byte {
      case quote:
        inString = true
        if depth == 1 && expectingKey {
          keyStart = index
          expectingKey = false
        }
      case UInt8(ascii: "{"), UInt8(ascii: "["):
        depth += 1
        expectingKey = depth == 1
      case UInt8(ascii: "}"), UInt8(ascii: "]"):
        depth -= 1
      case UInt8(ascii: ","):
        expectingKey = depth == 1
      default:
        break
      }
    }
    return keys
  }

  /// `string` as a JSON string literal: quotes, backslashes and control characters escaped, the rest
  /// as UTF-8 (as serde_json writes it). The metrics log writes its strings the same way.
  public static func jsonString(_ string: String) -> String {
    var result = "\""
    for scalar in string.unicodeScalars {
      switch scalar {
      case "\"": result += "\\\""
      case "\\": result += "\\\\"
      case "\n": result += "\\n"
      case "\r": result += "\\r"
      case "\t": result += "\\t"
      case _ where scalar.value < 0x20:
        result +=
          "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
          + String(scalar.value, radix: 16)
      default: result.unicodeScalars.append(scalar)
      }
    }
    return result + "\""
  }
}
