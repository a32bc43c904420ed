import CloudAuth
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing
@testable import CredentialAgent

/// Lines a handler wrote.
private final class Lines: Sendable {
    let lines = NIOLockedValueBox<[String]>([])
    var all: [String] { lines.withLockedValue { $0 } }
    func logger(_ format: AgentLogHandler.Format, level: Logger.Level = .info) -> Logger {
        Logger(label: "test") { label in
            AgentLogHandler(label: label, format: format, level: level) { line, _ in self.lines.withLockedValue { $0.append(line) } }
        }
    }
}

@Suite struct AgentLogHandlerTests {
    @Test func logfmtQuotesWhatNeedsQuoting() throws {
        let lines = Lines()
        var logger = lines.logger(.logfmt)
        logger[metadataKey: "credential"] = "orders-db"
        logger.warning("refresh failing", metadata: ["error": "GET http://x/token: status 500 \"boom\"", "secret": "\(Secret("hunter2"))"])
        logger.debug("not shown")
        let line = try #require(lines.all.first)
        #expect(lines.all.count == 1)
        #expect(line.hasPrefix("ts=20"))
        #expect(line.contains(#" level=warning msg="refresh failing" credential=orders-db error="GET http://x/token: status 500 \"boom\"" secret=<redacted>"#))
        #expect(!line.contains("hunter2"))
    }

    /// "\r\n" is one Character, equal to neither "\r" nor "\n": values are escaped by scalars.
    @Test func logfmtEscapesLineBreaksAndControls() {
        #expect(AgentLogHandler.logfmtValue("a\r\nb") == #""a\r\nb""#)
        #expect(AgentLogHandler.logfmtValue("a\rb\nc\td") == #""a\rb\nc\td""#)
        #expect(AgentLogHandler.logfmtValue("a\u{2028}b\u{0}c\u{7f}") == #""a\u2028b\u0000c\u007f""#)
        #expect(AgentLogHandler.logfmtValue("plain-word") == "plain-word")
        #expect(AgentLogHandler.logfmtValue("") == #""""#)
        let lines = Lines()
        lines.logger(.logfmt).info("reply", metadata: ["error": "WRONGPASS\r\n$5\r\nvalue"])
        let line = lines.all.first ?? ""
        #expect(!line.utf8.contains(UInt8(ascii: "\r")) && !line.utf8.contains(UInt8(ascii: "\n")))
        #expect(line.hasSuffix(#" error="WRONGPASS\r\n$5\r\nvalue""#))
    }

    @Test func jsonLinesAreObjects() throws {
        let lines = Lines()
        let logger = lines.logger(.json, level: .debug)
        logger.debug("refreshed", metadata: ["version": "3", "note": "line\nbreak"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(lines.all[0].utf8)) as? [String: String])
        #expect(object["level"] == "debug")
        #expect(object["msg"] == "refreshed")
        #expect(object["version"] == "3")
        #expect(object["note"] == "line\nbreak")
        #expect(!lines.all[0].contains("\n"))
    }
}

/// A pipe whose read end the test drains when it chooses.
private struct Pipe {
    let read: Int32, write: Int32
    init() {
        var ends: [Int32] = [0, 0]
        _ = pipe(&ends)
        (read, write) = (ends[0], ends[1])
    }

    /// Everything in the pipe until the write end is closed.
    func drain() -> [UInt8] {
        var all: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(read, $0.baseAddress, $0.count) }
            if count <= 0 { return all }
            all.append(contentsOf: buffer[0..<count])
        }
    }
}

@Suite struct LogWriterTests {
    @Test func linesArriveInOrderWithNewlines() {
        let pipe = Pipe()
        defer { close(pipe.read) }
        let writer = LogWriter(descriptor: pipe.write)
        for number in 0..<100 { writer.enqueue("line \(number)") }
        writer.flush()
        close(pipe.write)
        let text = String(decoding: pipe.drain(), as: UTF8.self)
        #expect(text == (0..<100).map { "line \($0)\n" }.joined())
        #expect(writer.dropped == 0)
    }

    /// Nobody reads the pipe: the writer thread blocks in write(2), the queue fills, and further
    /// lines are dropped and counted while the callers carry on.
    @Test func aStuckReaderCostsLinesNotCallers() async {
        let pipe = Pipe()
        defer { close(pipe.read) }
        let writer = LogWriter(descriptor: pipe.write, capacity: 8)
        let big = String(repeating: "x", count: 256 * 1024)
        for _ in 0..<100 { writer.enqueue(big) }
        #expect(writer.dropped >= 100 - 2 * 8, "at most one batch in write(2) and a full queue")
        // Once the reader catches up, what was queued is written.
        let reader = Task.detached { pipe.drain() }
        writer.flush()
        close(pipe.write)
        let received = await reader.value
        #expect(received.count == (100 - writer.dropped) * (big.utf8.count + 1))
    }

    /// A flood of ordinary lines fills the queue; a line that must not be dropped (the agent's
    /// "config reloaded") still gets through, after what was queued before it.
    @Test func linesThatMustNotBeDroppedSurviveAFlood() {
        let pipe = Pipe()
        defer { close(pipe.read) }
        let writer = LogWriter(descriptor: pipe.write, capacity: 8)
        let big = String(repeating: "x", count: 256 * 1024)
        for _ in 0..<100 { writer.enqueue(big) }
        writer.enqueue("config reloaded", neverDrop: true)
        for _ in 0..<100 { writer.enqueue(big) }
        #expect(writer.dropped >= 200 - 2 * 8)
        // The reader is a thread, not a task: flush() blocks this one until it has read.
        let received = NIOLockedValueBox<[UInt8]>([])
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            received.withLockedValue { $0 = pipe.drain() }
            done.signal()
        }
        writer.flush()
        close(pipe.write)
        done.wait()
        let text = String(decoding: received.withLockedValue { $0 }, as: UTF8.self)
        #expect(text.contains("\nconfig reloaded\n"))
    }
}
