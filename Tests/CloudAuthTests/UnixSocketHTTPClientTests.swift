import CloudAuth
import Foundation
import Synchronization
import Testing

/// A Unix socket server that answers every connection with the same raw bytes, whatever they
/// are (a broken or hostile agent), after reading the request head; `stall` keeps the connection
/// open without answering. Records the request heads it read.
private final class RawUnixServer: Sendable {
    let path: String
    private let listener: Int32
    private let heads = RequestHeads()

    private final class RequestHeads: Sendable {
        let list = Mutex<[String]>([])
    }

    init(answer: String, stall: Bool = false) throws {
        path = try scratchDirectory() + "/agent.sock"
        let listener = socket(AF_UNIX, 1, 0)  // SOCK_STREAM
        self.listener = listener
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        let heads = heads
        Thread {
            while true {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { return }
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while !String(decoding: received, as: UTF8.self).contains("\r\n\r\n") {
                    let count = buffer.withUnsafeMutableBytes { read(connection, $0.baseAddress, $0.count) }
                    guard count > 0 else { break }
                    received += buffer[..<count]
                }
                heads.list.withLock { $0.append(String(decoding: received, as: UTF8.self)) }
                if stall {
                    Thread.sleep(forTimeInterval: 60)
                } else {
                    _ = Array(answer.utf8).withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                }
                close(connection)
            }
        }.start()
    }

    /// The request heads read so far.
    var requests: [String] { heads.list.withLock { $0 } }

    deinit {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        unlink(path)
    }
}

/// UnixSocketHTTPClient (the client of the agent's socket) against answers the real agent never
/// gives: each must end in a clear error, within the time limits. The real agent's answers are
/// covered by every CLI test that talks to it.
struct UnixSocketHTTPClientTests {
    let client = UnixSocketHTTPClient()

    fileprivate func request(_ server: RawUnixServer, _ path: String = "/v1/health", total: Double = 5, maxBytes: Int = 1 << 20) -> HTTPRequest {
        HTTPRequest(url: "http://localhost" + path, timeouts: HTTPTimeouts(connect: 1, total: total),
                    maxResponseBytes: maxBytes, unixSocketPath: server.path, trustedServerUIDs: [getuid()])
    }

    @Test func readsAnAnswerAndSendsOneRequestPerConnection() async throws {
        let server = try RawUnixServer(answer: "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"a\":\"b\"}\r\nextra")
        let response = try await client.execute(request(server, "/v1/credentials/orders-db?min_valid=30"))
        #expect(response.status == 404)
        #expect(response.headers["Content-Type"] == "application/json")
        #expect(response.bodyText == "{\"a\":\"b\"}\r\n")
        let head = try #require(server.requests.first)
        #expect(head.hasPrefix("GET /v1/credentials/orders-db?min_valid=30 HTTP/1.1\r\n"))
        #expect(head.lowercased().contains("connection: close\r\n"))
    }

    /// The head's shapes the parser must read alike: no reason phrase, HTTP/1.0, a tab or several
    /// spaces before a value, a name in any case, a value that is not ASCII, a colon in a value.
    @Test func readsEveryShapeOfHead() async throws {
        let server = try RawUnixServer(answer: "HTTP/1.0 201\r\nX-Empty:\r\nX-Tab:\t  spaced \r\nX-Name: café\r\nlocation: http://a:1/b\r\ncontent-length: 2\r\n\r\n{}")
        let response = try await client.execute(request(server))
        #expect(response.status == 201)
        #expect(response.headers["x-empty"] == "")
        #expect(response.headers["x-tab"] == "spaced ")
        #expect(response.headers["x-name"] == "café")
        #expect(response.headers["Location"] == "http://a:1/b")
        #expect(response.headers.fields.count == 5)
        #expect(response.bodyText == "{}")
    }

    @Test func aBodyWithoutALengthEndsWithTheConnection() async throws {
        let server = try RawUnixServer(answer: "HTTP/1.1 200 OK\r\n\r\n{\"status\":\"ok\"}")
        let response = try await client.execute(request(server))
        #expect(response.bodyText == "{\"status\":\"ok\"}")
    }

    /// An answer the agent never sends, the error it must end in, and words its message must hold.
    struct BrokenAnswer: Sendable, CustomTestStringConvertible {
        var label: String
        var answer: String
        var code: CloudAuthError.Code
        var message: String
        var testDescription: String { label }
    }

    static let brokenAnswers = [
        BrokenAnswer(label: "chunked", answer: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                     code: .malformedResponse, message: "chunked"),
        // Refused on its content-length, before the body is read (the cap is 1,000 bytes).
        BrokenAnswer(label: "over the cap", answer: "HTTP/1.1 200 OK\r\ncontent-length: 1099511627776\r\n\r\nxx",
                     code: .malformedResponse, message: "larger than 1000 bytes"),
        BrokenAnswer(label: "cut short", answer: "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this",
                     code: .unavailable, message: "after 9 of 100 bytes"),
        BrokenAnswer(label: "not HTTP", answer: "SSH-2.0-OpenSSH_9.2\r\n\r\n",
                     code: .malformedResponse, message: "status line"),
        BrokenAnswer(label: "status out of range", answer: "HTTP/1.1 999 Odd\r\n\r\n",
                     code: .malformedResponse, message: "status line"),
        BrokenAnswer(label: "status not a number", answer: "HTTP/1.1 2x0 OK\r\n\r\n",
                     code: .malformedResponse, message: "status line"),
        BrokenAnswer(label: "no head at all", answer: "\r\n\r\n{}",
                     code: .malformedResponse, message: "status line"),
        BrokenAnswer(label: "header without a colon", answer: "HTTP/1.1 200 OK\r\ncontent-length 2\r\n\r\n{}",
                     code: .malformedResponse, message: "without a colon"),
        BrokenAnswer(label: "content-length not a number", answer: "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n{}",
                     code: .malformedResponse, message: "not a number"),
    ]

    @Test(arguments: brokenAnswers)
    func aBrokenAnswerEndsInAClearError(_ broken: BrokenAnswer) async throws {
        let server = try RawUnixServer(answer: broken.answer)
        let error = await #expect(throws: CloudAuthError.self) { try await client.execute(request(server, maxBytes: 1000)) }
        #expect(error?.code == broken.code)
        #expect(error?.message.contains(broken.message) == true, "\(String(describing: error))")
    }

    @Test func aServerThatNeverAnswersTimesOutWithTheLimitNamed() async throws {
        let server = try RawUnixServer(answer: "", stall: true)
        let error = await #expect(throws: CloudAuthError.self) { try await client.execute(request(server, "/v1/health?x=secret", total: 0.5)) }
        #expect(error?.code == .timeout)
        #expect(error?.message.contains("total 0.5s") == true)
        #expect(error?.description.contains("secret") == false)
    }

    @Test func cancellingEndsAWaitAtOnce() async throws {
        let server = try RawUnixServer(answer: "", stall: true)
        let client = self.client
        let waiting = Task { try await client.execute(request(server, total: 60)) }
        try await Task.sleep(for: .milliseconds(200))
        let start = ContinuousClock.now
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        // The limit was 60 s: only the cancellation can have ended the wait this soon.
        #expect(ContinuousClock.now - start < .seconds(30))
    }

    @Test func aMissingSocketIsNamed() async throws {
        let path = try scratchDirectory() + "/none.sock"
        let error = await #expect(throws: CloudAuthError.self) {
            try await client.execute(HTTPRequest(url: "http://localhost/v1/health", unixSocketPath: path))
        }
        #expect(error?.code == .unavailable)
        #expect(error?.message == "no socket at this path")
        #expect(error?.source.contains(path) == true)
    }

    @Test func aServerOfAnotherUIDIsRefusedBeforeAnythingIsSent() async throws {
        let server = try RawUnixServer(answer: "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        var untrusting = request(server)
        untrusting.trustedServerUIDs = [getuid() &+ 1]
        await #expect(throws: UntrustedSocketPeer.self) { try await client.execute(untrusting) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(server.requests.allSatisfy { $0.isEmpty })
    }
}
