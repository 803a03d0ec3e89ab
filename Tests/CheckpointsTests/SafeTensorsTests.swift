import Foundation
import Testing

@testable import Checkpoints

/// Deterministic values that cover signs, magnitudes and exact bit patterns (a 32-bit LCG).
private func pseudoRandomValues(_ count: Int, seed: UInt32) -> [Float] {
  var state = seed
  return (0..<count).map { _ in
    state = state &* 1_664_525 &+ 1_013_904_223
    return Float(bitPattern: state & 0x7F7F_FFFF | (state & 1) << 31)  // finite: exponent below 255
  }
}

@Suite struct SafeTensorsRoundTripTests {
  @Test func valuesShapesAndOrderRoundTripBitExactly() throws {
    let special: [Float] = [
      0, -0.0, 1, -1, .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
      Float(bitPattern: 0x0001_2345), Float.leastNormalMagnitude.nextDown,
      .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .infinity, -.infinity,
      .leastNormalMagnitude, 0.1,
    ]
    let tensors = [
      NamedTensor(
        name: "0.weight", shape: [256, 784], values: pseudoRandomValues(256 * 784, seed: 1)),
      NamedTensor(name: "0.bias", shape: [256], values: pseudoRandomValues(256, seed: 2)),
      NamedTensor(name: "special", shape: [2, 7], values: special),
      NamedTensor(name: "scalar", shape: [], values: [3.5]),
      NamedTensor(name: "empty", shape: [0, 3], values: []),
      NamedTensor(name: "名前 \"quoted\"\n", shape: [1], values: [-2]),
    ]
    let decoded = try SafeTensors.decode(SafeTensors.encode(tensors, metadata: [:]), path: "x")
    #expect(decoded.tensors.map(\.name) == tensors.map(\.name))
    #expect(decoded.tensors.map(\.shape) == tensors.map(\.shape))
    // Bit patterns, not ==: -0.0 == 0.0 would hide a lost sign.
    #expect(
      decoded.tensors.map { $0.values.map(\.bitPattern) }
        == tensors.map { $0.values.map(\.bitPattern) })
    #expect(decoded.metadata.isEmpty)
  }

  @Test func metadataRoundTrips() throws {
    let metadata = [
      "model": "mlp 784-256-128-10 relu",
      "preprocessing": #"{"scale": 0.00392156862745098, "mean": 0.2860}"#,
      "unicode ✓": "tab\there, backslash \\, control \u{1}", "": "",
    ]
    let decoded = try SafeTensors.decode(
      SafeTensors.encode([NamedTensor(name: "w", shape: [1], values: [1])], metadata: metadata),
      path: "x")
    #expect(decoded.metadata == metadata)
    #expect(decoded.tensors == [NamedTensor(name: "w", shape: [1], values: [1])])
  }

  @Test func noTensorsGivesAValidFile() throws {
    let decoded = try SafeTensors.decode(SafeTensors.encode([], metadata: ["k": "v"]), path: "x")
    #expect(decoded.tensors.isEmpty)
    #expect(decoded.metadata == ["k": "v"])
  }
}

@Suite struct SafeTensorsLayoutTests {
  @Test func bytesFollowTheFormat() throws {
    let file = SafeTensors.encode(
      [
        NamedTensor(name: "0.weight", shape: [1, 2], values: [1, -2]),
        NamedTensor(name: "0.bias", shape: [1], values: [0.5]),
      ],
      metadata: ["format": "pt"])
    let headerLength = file[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
    #expect(headerLength % 8 == 0)
    #expect(file.count == 8 + headerLength + 12)

    let header = try #require(
      try JSONSerialization.jsonObject(with: Data(file[8..<(8 + headerLength)])) as? [String: Any])
    #expect(Set(header.keys) == ["__metadata__", "0.weight", "0.bias"])
    #expect(header["__metadata__"] as? [String: String] == ["format": "pt"])
    let weight = try #require(header["0.weight"] as? [String: Any])
    #expect(Set(weight.keys) == ["dtype", "shape", "data_offsets"])
    #expect(weight["dtype"] as? String == "F32")
    #expect(weight["shape"] as? [Int] == [1, 2])
    #expect(weight["data_offsets"] as? [Int] == [0, 8])
    let bias = try #require(header["0.bias"] as? [String: Any])
    #expect(bias["shape"] as? [Int] == [1])
    #expect(bias["data_offsets"] as? [Int] == [8, 12])

    // Padding is spaces after the closing brace.
    let text = Array(file[8..<(8 + headerLength)])
    let close = try #require(text.lastIndex(of: UInt8(ascii: "}")))
    #expect(text[(close + 1)...].allSatisfy { $0 == 0x20 })

    // Little-endian IEEE 754: 1.0 = 0x3F800000, -2.0 = 0xC0000000, 0.5 = 0x3F000000.
    let data = Array(file[(8 + headerLength)...])
    #expect(data == [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x3F])
  }

  /// Bytes written by Python's safetensors 0.8.0:
  /// `safetensors.numpy.save({"b": np.array([[0.5], [-3]], np.float32), "a": np.array([1, 2], np.float32)},
  /// metadata={"format": "pt"})`.
  static let pythonTwoTensors = bytes(
    hex:
      "90000000000000007b225f5f6d657461646174615f5f223a7b22666f726d6174223a227074227d2c2261223a7b2264"
      + "74797065223a22463332222c227368617065223a5b325d2c22646174615f6f666673657473223a5b302c385d7d2c2262"
      + "223a7b226474797065223a22463332222c227368617065223a5b322c315d2c22646174615f6f666673657473223a5b38"
      + "2c31365d7d7d2020200000803f000000400000003f000040c0")

  @Test func decodesAFileWrittenByPython() throws {
    // `safetensors.numpy.save({"a": np.array([1, 2], np.float32)})`, spelled out byte by byte.
    let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"# + "  "
    var file: [UInt8] = [56, 0, 0, 0, 0, 0, 0, 0]
    file += Array(header.utf8)
    file += [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40]
    #expect(
      file
        == bytes(
          hex:
            "38000000000000007b2261223a7b226474797065223a22463332222c227368617065223a5b325d2c226461"
            + "74615f6f666673657473223a5b302c385d7d7d20200000803f00000040"))
    let decoded = try SafeTensors.decode(file, path: "a.safetensors")
    #expect(decoded.tensors == [NamedTensor(name: "a", shape: [2], values: [1, 2])])
    #expect(decoded.metadata == [:])

    let two = try SafeTensors.decode(Self.pythonTwoTensors, path: "two.safetensors")
    #expect(
      two.tensors == [
        NamedTensor(name: "a", shape: [2], values: [1, 2]),
        NamedTensor(name: "b", shape: [2, 1], values: [0.5, -3]),
      ])
    #expect(two.metadata == ["format": "pt"])
  }

  @Test func encodesTheSameBytesAsPython() {
    let file = SafeTensors.encode(
      [
        NamedTensor(name: "a", shape: [2], values: [1, 2]),
        NamedTensor(name: "b", shape: [2, 1], values: [0.5, -3]),
      ],
      metadata: ["format": "pt"])
    #expect(file == Self.pythonTwoTensors)
  }

  @Test func decodeReturnsTensorsInDataOrderNotHeaderOrder() throws {
    let file = safetensorsFile(
      header: #"{"second":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"#
        + #""first":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
      data: [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40])
    let decoded = try SafeTensors.decode(file, path: "x")
    #expect(
      decoded.tensors == [
        NamedTensor(name: "first", shape: [1], values: [1]),
        NamedTensor(name: "second", shape: [1], values: [2]),
      ])
  }

  @Test func sameNameAtDifferentDepthsIsNotADuplicate() throws {
    // "a" is both a metadata key and a tensor, and a metadata value looks like a key: none of it repeats a name.
    let file = safetensorsFile(
      header:
        #"{"__metadata__":{"a":"\",\"a\":{"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
      data: [0, 0, 0x80, 0x3F])
    let decoded = try SafeTensors.decode(file, path: "x")
    #expect(decoded.tensors.map(\.name) == ["a"])
    #expect(decoded.metadata == ["a": #"","a":{"#])
  }
}

/// One malformed file, and a phrase its error must contain (which check fired).
struct Malformed: CustomTestStringConvertible, Sendable {
  var label: String
  var bytes: [UInt8]
  var expected: String
  var testDescription: String { label }

  /// A file whose header is one tensor "a" with the given entry text, followed by `dataCount` zero bytes.
  static func entry(_ label: String, _ entry: String, data dataCount: Int = 4, expect: String)
    -> Malformed
  {
    Malformed(
      label: label,
      bytes: safetensorsFile(
        header: #"{"a":"# + entry + "}", data: Array(repeating: 0, count: dataCount)),
      expected: expect)
  }

  static func header(_ label: String, _ header: String, data dataCount: Int, expect: String)
    -> Malformed
  {
    Malformed(
      label: label,
      bytes: safetensorsFile(header: header, data: Array(repeating: 0, count: dataCount)),
      expected: expect)
  }
}

let validFile = SafeTensors.encode(
  [NamedTensor(name: "a", shape: [2], values: [1, 2])], metadata: [:])
let f32 = #""dtype":"F32""#

let malformedFiles: [Malformed] = [
  Malformed(label: "empty file", bytes: [], expected: "0 bytes long, shorter than the 8-byte"),
  Malformed(
    label: "7 bytes", bytes: [8, 0, 0, 0, 0, 0, 0],
    expected: "7 bytes long, shorter than the 8-byte"),
  Malformed(
    label: "header length past the end", bytes: littleEndianBytes(100) + Array("{}".utf8),
    expected: "header length 100 runs past the end of the file (10 bytes"),
  Malformed(
    label: "header length near UInt64.max", bytes: littleEndianBytes(.max) + Array("{}".utf8),
    expected: "runs past the end of the file"),
  Malformed(
    label: "invalid UTF-8", bytes: littleEndianBytes(4) + [0x7B, 0x22, 0xFF, 0x7D],
    expected: "not valid UTF-8"),
  .header("not JSON", "{abc", data: 0, expect: "not valid JSON"),
  .header(
    "header is an array", "[1, 2]", data: 0, expect: "header is JSON an array, expected an object"),
  .header("header is a string", #""a""#, data: 0, expect: "expected an object"),
  .entry(
    "entry is a number", "3", expect: "tensor \"a\" is the number 3, expected an object with dtype"),
  .entry("no dtype", #"{"shape":[1],"data_offsets":[0,4]}"#, expect: "tensor \"a\" has no dtype"),
  .entry("no shape", #"{"dtype":"F32","data_offsets":[0,4]}"#, expect: "tensor \"a\" has no shape"),
  .entry(
    "no data_offsets", #"{"dtype":"F32","shape":[1]}"#, expect: "tensor \"a\" has no data_offsets"),
  .entry(
    "dtype is a number", #"{"dtype":32,"shape":[1],"data_offsets":[0,4]}"#,
    expect: "dtype is the number 32"),
  .entry(
    "dtype F16", #"{"dtype":"F16","shape":[2],"data_offsets":[0,4]}"#,
    expect: "has dtype F16, but only F32"),
  .entry(
    "dtype F64", #"{"dtype":"F64","shape":[1],"data_offsets":[0,8]}"#, data: 8,
    expect: "has dtype F64"),
  .entry(
    "dtype lowercase f32", #"{"dtype":"f32","shape":[1],"data_offsets":[0,4]}"#,
    expect: "has dtype f32"),
  .entry(
    "shape is a string", #"{\#(f32),"shape":"1","data_offsets":[0,4]}"#,
    expect: "shape is the string"),
  .entry(
    "shape holds a boolean", #"{\#(f32),"shape":[true],"data_offsets":[0,4]}"#,
    expect: "shape holds the boolean true"),
  .entry(
    "shape holds 1.0", #"{\#(f32),"shape":[1.0],"data_offsets":[0,4]}"#,
    expect: "shape holds the number 1"),
  .entry(
    "shape holds 1e0", #"{\#(f32),"shape":[1e0],"data_offsets":[0,4]}"#,
    expect: "shape holds the number 1"),
  .entry(
    "shape holds -1", #"{\#(f32),"shape":[-1],"data_offsets":[0,4]}"#,
    expect: "shape holds the number -1"),
  .entry(
    "shape holds null", #"{\#(f32),"shape":[null],"data_offsets":[0,4]}"#,
    expect: "shape holds null"),
  .entry(
    "data_offsets is an object", #"{\#(f32),"shape":[1],"data_offsets":{}}"#,
    expect: "data_offsets is an object"),
  .entry(
    "data_offsets holds false", #"{\#(f32),"shape":[1],"data_offsets":[false,4]}"#,
    expect: "data_offsets holds the boolean false"),
  .entry(
    "data_offsets holds a string", #"{\#(f32),"shape":[1],"data_offsets":["0",4]}"#,
    expect: "data_offsets holds the string"),
  .entry(
    "data_offsets has 3 numbers", #"{\#(f32),"shape":[1],"data_offsets":[0,4,4]}"#,
    expect: "has 3 numbers, expected [begin, end]"),
  .entry(
    "data_offsets end before begin", #"{\#(f32),"shape":[0],"data_offsets":[4,0]}"#,
    expect: "end before they begin"),
  .entry(
    "shape × 4 ≠ span", #"{\#(f32),"shape":[2],"data_offsets":[0,4]}"#,
    expect: "shape [2] needs 8 bytes of F32, but data_offsets [0, 4] span 4"),
  .entry(
    "shape overflows", #"{\#(f32),"shape":[4611686018427387904,4],"data_offsets":[0,4]}"#,
    expect: "is too large"),
  .entry(
    "offsets past the data", #"{\#(f32),"shape":[2],"data_offsets":[0,8]}"#,
    expect: "needs data bytes 0..<8, but the data region has only 4 bytes"),
  Malformed(
    label: "truncated data", bytes: Array(validFile.dropLast()),
    expected: "needs data bytes 0..<8, but the data region has only 7 bytes"),
  Malformed(
    label: "trailing bytes", bytes: validFile + [0],
    expected: "the data region has 9 bytes but the tensors cover only 8"),
  .header(
    "overlapping tensors",
    #"{"a":{\#(f32),"shape":[2],"data_offsets":[0,8]},"b":{\#(f32),"shape":[2],"data_offsets":[4,12]}}"#,
    data: 12, expect: "tensor \"b\" at data bytes 4..<12 overlaps tensor \"a\", which ends at 8"),
  .header(
    "same offsets twice",
    #"{"a":{\#(f32),"shape":[1],"data_offsets":[0,4]},"b":{\#(f32),"shape":[1],"data_offsets":[0,4]}}"#,
    data: 4, expect: "overlaps"),
  .header(
    "gap between tensors",
    #"{"a":{\#(f32),"shape":[1],"data_offsets":[0,4]},"b":{\#(f32),"shape":[1],"data_offsets":[8,12]}}"#,
    data: 12, expect: "data bytes 4..<8 belong to no tensor"),
  .header(
    "data not starting at 0", #"{"a":{\#(f32),"shape":[1],"data_offsets":[4,8]}}"#, data: 8,
    expect: "data bytes 0..<4 belong to no tensor"),
  .header(
    "no tensors but data", "{}", data: 4,
    expect: "the data region has 4 bytes but the tensors cover only 0"),
  .header(
    #"__metadata__ is a string"#, #"{"__metadata__":"x"}"#, data: 0,
    expect: "__metadata__ is the string \"x\", expected an object of strings"),
  .header(
    #"__metadata__ is null"#, #"{"__metadata__":null}"#, data: 0, expect: "__metadata__ is null"),
  .header(
    #"__metadata__ holds a number"#, #"{"__metadata__":{"k":1}}"#, data: 0,
    expect: "__metadata__ entry \"k\" is the number 1, expected a string"),
  .header(
    #"__metadata__ holds an object"#, #"{"__metadata__":{"k":{}}}"#, data: 0,
    expect: "__metadata__ entry \"k\" is an object"),
  .header(
    "duplicate names",
    #"{"a":{\#(f32),"shape":[1],"data_offsets":[0,4]},"a":{\#(f32),"shape":[1],"data_offsets":[4,8]}}"#,
    data: 8, expect: "the header names \"a\" more than once"),
  .header(
    "duplicate names spelled differently",
    #"{"a":{\#(f32),"shape":[1],"data_offsets":[0,4]},"\u0061":{\#(f32),"shape":[1],"data_offsets":[4,8]}}"#,
    data: 8, expect: "the header names \"a\" more than once"),
]

@Suite struct SafeTensorsRejectionTests {
  @Test(arguments: malformedFiles)
  func rejects(_ file: Malformed) throws {
    let error = try #require(decodeError(file.bytes, path: "/ckpt/step-00000001/model.safetensors"))
    #expect(error.path == "/ckpt/step-00000001/model.safetensors")
    #expect(error.problem.contains(file.expected), "\(error.problem)")
    #expect(error.description.hasPrefix("/ckpt/step-00000001/model.safetensors: "))
  }

  @Test func theValidBaseFilesDecode() throws {
    // The malformed files above are small edits of these; they must fail for the reason named, not another.
    #expect(decodeError(validFile) == nil)
    #expect(
      decodeError(
        safetensorsFile(
          header: #"{"a":{\#(f32),"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])) == nil)
    #expect(
      decodeError(
        safetensorsFile(
          header: #"{"__metadata__":{},"a":{\#(f32),"shape":[0],"data_offsets":[0,0]}}"#, data: []))
        == nil)
  }

  @Test func errorDescriptionIsOneLine() {
    let error = CheckpointError(path: "/c/model.safetensors", problem: "bad", hint: "Do this")
    #expect(error.description == "/c/model.safetensors: bad. Do this")
  }
}
