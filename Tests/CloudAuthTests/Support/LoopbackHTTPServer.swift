import CloudAuth
import CloudEmulator
import Synchronization

/// A stub HTTP endpoint on a random loopback port for client tests (HTTP client, cloud metadata
/// endpoints, a stub Vault): the emulator's HTTP server answering each request with a closure,
/// every request recorded. A response may also stall, to provoke client timeouts.
final class LoopbackHTTPServer: Sendable {
    struct Request: Sendable {
        var method: String
        /// The path with its query, as sent.
        var path: String
        /// Lower-cased names.
        var headers: [String: String]
        var body: String
    }

    struct Response: Sendable {
        var status: Int
        var body: String
        var headers: CloudAuth.HTTPHeaders
        /// Hold the answer back far longer than any client test waits.
        var stall: Bool
        init(_ status: Int, _ body: String = "", headers: CloudAuth.HTTPHeaders = [:], stall: Bool = false) {
            self.status = status
            self.body = body
            self.headers = headers
            self.stall = stall
        }
    }

    /// How long a stalled answer is held back.
    static let stallSeconds = 60.0

    /// Every request received, in order; shared with the server's route.
    private final class RequestLog: Sendable {
        let entries = Mutex<[Request]>([])
    }

    private let server: EmulatorHTTPServer
    private let recorded = RequestLog()

    var url: String { "http://127.0.0.1:\(server.port)" }
    var requests: [Request] { recorded.entries.withLock { $0 } }

    init(handler: @escaping @Sendable (Request) -> Response) async throws {
        let recorded = self.recorded
        server = try await EmulatorHTTPServer.start { request in
            var headers: [String: String] = [:]
            for (name, value) in request.headers { headers[name.lowercased()] = value }
            let path = request.path + (request.rawQuery.map { "?" + $0 } ?? "")
            let seen = Request(method: request.method, path: path, headers: headers, body: String(decoding: request.body, as: UTF8.self))
            recorded.entries.withLock { $0.append(seen) }
            let response = handler(seen)
            return EmulatorResponse(status: response.status, headers: response.headers, body: Array(response.body.utf8),
                                    delay: response.stall ? Self.stallSeconds : 0)
        }
    }

    /// Stops accepting.
    func stop() {
        server.close()
    }
}
