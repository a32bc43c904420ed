import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes log lines to a file descriptor from a thread of its own, so that whoever logs (an event
/// loop among them) never waits for the reader of that descriptor: lines go into a bounded queue,
/// and when a slow reader lets it fill up, further lines are dropped and counted instead of
/// blocking the caller. Lines queued with `neverDrop` (rare by contract: the agent's lifecycle and
/// errors) are kept even then, so that a flood of ordinary lines cannot crowd them out.
///
/// `@unchecked Sendable`: every mutable field is guarded by `condition`.
public final class LogWriter: @unchecked Sendable {
    /// The process's standard error; its thread starts with the first line.
    public static let standardError = LogWriter(descriptor: 2)

    /// Lines that may wait in the queue; more are dropped, unless queued with `neverDrop`.
    public let capacity: Int
    private let descriptor: Int32
    private let condition = NSCondition()
    private var queue: [String] = []
    private var writing = false
    private var started = false
    private var droppedLines = 0

    public init(descriptor: Int32, capacity: Int = 4096) {
        self.descriptor = descriptor
        self.capacity = max(1, capacity)
    }

    /// Queues `line` (a newline is added) for writing, or drops it when the queue is full and
    /// `neverDrop` is false.
    public func enqueue(_ line: String, neverDrop: Bool = false) {
        condition.lock()
        defer { condition.unlock() }
        if !started {
            started = true
            let thread = Thread { [self] in writeForever() }
            thread.name = "credagent-log"
            thread.start()
        }
        guard queue.count < capacity || neverDrop else {
            droppedLines += 1
            return
        }
        queue.append(line)
        condition.broadcast()
    }

    /// Lines dropped so far because the queue was full.
    public var dropped: Int {
        condition.lock()
        defer { condition.unlock() }
        return droppedLines
    }

    /// Waits until every queued line has been written; the process calls it before exiting.
    public func flush() {
        condition.lock()
        defer { condition.unlock() }
        while !queue.isEmpty || writing { condition.wait() }
    }

    private func writeForever() {
        while true {
            condition.lock()
            while queue.isEmpty { condition.wait() }
            let batch = queue
            queue.removeAll(keepingCapacity: true)
            writing = true
            condition.unlock()

            var bytes: [UInt8] = []
            bytes.reserveCapacity(batch.reduce(0) { $0 + $1.utf8.count + 1 })
            for line in batch {
                bytes.append(contentsOf: line.utf8)
                bytes.append(UInt8(ascii: "\n"))
            }
            Self.writeAll(descriptor, bytes)

            condition.lock()
            writing = false
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Writes all of `bytes`, retrying after signals; gives up on other errors (nothing else
    /// could report them).
    static func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written > 0 {
                offset += written
            } else if written < 0, errno == EINTR {
                continue
            } else {
                return
            }
        }
    }
}
