import Foundation

/// A value set by one thread (a test's `during` closure) and read by another once the process has ended.
final class LockedBox<Value: Sendable>: @unchecked Sendable {
  private let lock = NSLock()
  private var stored: Value?
  func set(_ value: Value) { lock.withLock { stored = value } }
  var value: Value? { lock.withLock { stored } }
}
