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
            AgentLogHandler(label: label, format: format, level: level) { line in self.lines.withLockedValue { $0.append(line) } }
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
