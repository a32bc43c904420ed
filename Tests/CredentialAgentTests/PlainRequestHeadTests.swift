import NIOCore
import NIOHTTP1
import Testing
@testable import CredentialAgent

@Suite struct PlainRequestHeadTests {
    private func parse(_ text: String, maxFields: Int = 100, maxLength: Int = 1024) -> PlainRequestHead.Outcome {
        Array(text.utf8).withUnsafeBytes { PlainRequestHead.parse($0, maxFields: maxFields, maxLength: maxLength) }
    }

    @Test func readsTheUsualShape() throws {
        let text = "GET /v1/credentials/orders-db?min_valid=60 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.14.1\r\n"
            + "Accept: */*\r\nX-Empty:\r\nX-Tabs:\ta\tb\r\n\r\nGET /next"
        guard case let .request(head, length) = parse(text) else { Issue.record("not read: \(parse(text))"); return }
        #expect(length == text.utf8.count - "GET /next".utf8.count)
        #expect(head.method == .GET && head.version == .http1_1 && head.isKeepAlive)
        #expect(head.uri == "/v1/credentials/orders-db?min_valid=60")
        #expect(Array(head.headers).map { "\($0.name)=\($0.value)" }
                == ["Host=localhost", "User-Agent=curl/8.14.1", "Accept=*/*", "X-Empty=", "X-Tabs=a\tb"])
        guard case let .request(post, _) = parse("POST /v1/credentials/pg/refresh HTTP/1.1\r\n\r\n") else {
            Issue.record("POST not read"); return
        }
        #expect(post.method == .POST && post.headers.isEmpty)
    }

    @Test func waitsForTheRestOfAHead() {
        for text in ["", "G", "GET /v1/health", "GET /v1/health HTTP/1.", "GET /v1/health HTTP/1.1\r\nHost: x",
                     "GET /v1/health HTTP/1.1\r\nHost: x\r\n", "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r"] {
            #expect(parse(text) == .incomplete, "\(text.debugDescription)")
        }
    }

    /// Everything else is NIO's decoder's to read (or refuse).
    @Test func leavesEveryOtherShapeToNIO() {
        let unusual = [
            "HEAD /v1/health HTTP/1.1\r\n\r\n", "get /v1/health HTTP/1.1\r\n\r\n", "GET  /v1/health HTTP/1.1\r\n\r\n",
            "GET * HTTP/1.1\r\n\r\n", "GET http://x/v1/health HTTP/1.1\r\n\r\n", "GET /v1/he\"alth HTTP/1.1\r\n\r\n",
            "GET /v1/health#top HTTP/1.1\r\n\r\n", "GET /v1/health HTTP/1.0\r\n\r\n", "GET /v1/health HTTP/2.0\r\n\r\n",
            "GET /v1/health HTTP/1.1\n\n", "GET /v1/health HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET /v1/health HTTP/1.1\r\nHost:  x\r\n\r\n", "GET /v1/health HTTP/1.1\r\nHost: x \r\n\r\n",
            "GET /v1/health HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", "GET /v1/health HTTP/1.1\r\nHo_st: x\r\n\r\n",
            "GET /v1/health HTTP/1.1\r\nHost: caf\u{e9}\r\n\r\n", "GET /v1/health HTTP/1.1\r\nHost: x\ry\r\n\r\n",
            "GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n", "GET /v1/health HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /v1/health HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\n\r\n", "GET /v1/health HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "GET /v1/health HTTP/1.1\r\nProxy-Connection: keep-alive\r\n\r\n", "\r\nGET /v1/health HTTP/1.1\r\n\r\n",
        ]
        for text in unusual { #expect(parse(text) == .unusual, "\(text.debugDescription)") }
    }

    /// More fields than the limit, or more bytes than the reader takes, are NIO's decoder's to
    /// refuse (431) or read.
    @Test func leavesHeadsOverItsLimitsToNIO() {
        let threeFields = "GET /v1/health HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n"
        #expect(parse(threeFields, maxFields: 2) == .unusual)
        if case .request = parse(threeFields, maxFields: 3) {} else { Issue.record("three fields not read with a limit of 3") }
        #expect(parse(threeFields, maxLength: threeFields.utf8.count - 1) == .unusual)
        #expect(parse("GET /v1/health HTTP/1.1\r\na: 1\r\n", maxLength: 20) == .unusual)
    }
}
