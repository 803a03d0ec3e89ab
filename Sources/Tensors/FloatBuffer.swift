/// Owning, 64-byte-aligned, zero-initialised Float32 storage — or a view of `count` floats inside memory that
/// something else owns (`init(viewing:count:owner:)`, e.g. a shared-memory window).
///
/// The one allocation behind the flat parameter and gradient buffers and every preallocated activation.
/// The pointer is stable for the buffer's lifetime, so hot loops take it once and never touch the class again.
/// `@unchecked Sendable`: the buffer does no synchronisation; callers hand it between threads the way they
/// would hand a raw pointer (one writer at a time).
public final class FloatBuffer: @unchecked Sendable {
  /// Number of Float elements.
  public let count: Int
  /// Start of the storage; 64-byte aligned (one cache line, one AVX-512 register).
  public let pointer: UnsafeMutablePointer<Float>

  /// The alignment of `pointer`, in bytes.
  public static let alignment = 64
  /// What keeps a viewed pointer's memory alive; nil when this buffer owns its storage.
  private let owner: AnyObject?

  /// `count` zeros. `count` may be 0 (the pointer is then valid but addresses nothing).
  public init(count: Int) {
    precondition(count >= 0, "FloatBuffer count must be non-negative, got \(count)")
    self.count = count
    let raw = UnsafeMutableRawPointer.allocate(
      byteCount: max(count, 1) &* MemoryLayout<Float>.stride, alignment: Self.alignment)
    pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    pointer.initialize(repeating: 0, count: max(count, 1))
    owner = nil
  }

  /// `count` floats at `pointer` (64-byte aligned), which `owner` keeps alive; the contents are left as they
  /// are, and the memory is not freed by this buffer.
  public init(viewing pointer: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
    precondition(count >= 0, "FloatBuffer count must be non-negative, got \(count)")
    precondition(Int(bitPattern: pointer) % Self.alignment == 0, "a FloatBuffer view must be 64-byte aligned")
    self.count = count
    self.pointer = pointer
    self.owner = owner
  }

  /// `values`, copied.
  public convenience init(_ values: [Float]) {
    self.init(count: values.count)
    copy(from: values)
  }

  deinit {
    if owner == nil { UnsafeMutableRawPointer(pointer).deallocate() }
  }

  /// The whole storage as a buffer pointer (valid while `self` is alive).
  public var buffer: UnsafeMutableBufferPointer<Float> {
    UnsafeMutableBufferPointer(start: pointer, count: count)
  }

  /// Sets every element to 0.
  public func zero() {
    pointer.update(repeating: 0, count: count)
  }

  /// Bounds-checked element access (for tests and setup code; hot loops use `pointer`).
  public subscript(index: Int) -> Float {
    get {
      precondition(
        index >= 0 && index < count, "FloatBuffer index \(index) out of range 0..<\(count)")
      return pointer[index]
    }
    set {
      precondition(
        index >= 0 && index < count, "FloatBuffer index \(index) out of range 0..<\(count)")
      pointer[index] = newValue
    }
  }

  /// A copy of the contents.
  public var array: [Float] { Array(buffer) }

  /// Overwrites the contents with `values`, which must have exactly `count` elements.
  public func copy(from values: [Float]) {
    precondition(
      values.count == count, "FloatBuffer.copy(from:) expects \(count) values, got \(values.count)")
    values.withUnsafeBufferPointer { source in
      if let base = source.baseAddress { pointer.update(from: base, count: count) }
    }
  }
}
