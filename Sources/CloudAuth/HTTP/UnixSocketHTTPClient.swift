import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// HTTP/1.1 over a local Unix socket with plain system calls: the client of the agent's own
/// socket API (`credagent health`, `get`, `wait`, `exec`).
///
/// ``CurlHTTPClient`` could do this too, but loading libcurl and the thirty libraries it depends
/// on is most of the start-up time of a command that a probe runs every few seconds. The agent
/// answers every request with a `content-length` body and closes the connection when asked to,
/// which is all this client speaks: one request per connection (`connection: close`), a body
/// delimited by `content-length` or by the end of the connection; a chunked answer fails as
/// malformed. It keeps ``CurlHTTPClient``'s guarantees that apply here: connect and total time
/// limits, the response size cap, the check of the server's uid (``HTTPRequest/trustedServerUIDs``)
/// before anything is sent, and cancellation. Errors name the socket and the request's path
/// without its query, never a header or body.
public struct UnixSocketHTTPClient: HTTPClient {
    /// Where a request's blocking system calls run.
    public enum Threading: Sendable {
        /// On one of the executor's threads, so that Swift's cooperative threads stay free: for a
        /// process that does other work meanwhile.
        case executor(BlockingExecutor)
        /// On the calling task's own thread: for a command that sends one request at a time and
        /// does nothing else meanwhile, which is then spared starting a thread for it.
        case callingThread
    }

    private let threading: Threading

    public init(threading: Threading = .executor(.shared)) {
        self.threading = threading
    }

    public func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let exchange = try UnixSocketExchange(request: request)
        return try await withTaskCancellationHandler {
            try await perform(exchange)
        } onCancel: {
            exchange.cancel()
        }
    }

    /// Runs `exchange` where ``threading`` says.
    private func perform(_ exchange: UnixSocketExchange) async throws -> HTTPResponse {
        switch threading {
        case let .executor(executor): try await executor.run { try exchange.perform() }
        case .callingThread: try exchange.perform()
        }
    }
}

/// One request and its answer on a new connection. Lives on one executor thread while `perform`
/// runs; `cancel` may be called from any thread and wakes it.
private final class UnixSocketExchange: Sendable {
    let request: HTTPRequest
    let socketPath: String
    let target: String
    /// The connection's descriptor while open (-1 before and after), and whether it was cancelled.
    private let state = Mutex<(descriptor: Int32, cancelled: Bool)>((-1, false))

    init(request: HTTPRequest) throws {
        guard let socketPath = request.unixSocketPath else {
            throw CloudAuthError(.invalidInput, source: request.url, "the request names no Unix socket")
        }
        let endpoint = try EndpointURL(parsing: request.url)
        self.request = request
        self.socketPath = socketPath
        self.target = endpoint.path + (endpoint.query.map { "?" + $0 } ?? "")
    }

    func cancel() {
        state.withLock { state in
            state.cancelled = true
            if state.descriptor >= 0 { shutdown(state.descriptor, Int32(SHUT_RDWR)) }
        }
    }

    private func fail(_ code: CloudAuthError.Code, _ message: String, remedy: String? = nil) -> CloudAuthError {
        CloudAuthError(code, source: "\(request.method) \(socketPath) \(target.prefix { $0 != "?" })", message, remedy: remedy)
    }

    func perform() throws -> HTTPResponse {
        let start = ContinuousClock.now
        let descriptor = socket(AF_UNIX, UnixSocketAddress.streamSocketType, 0)
        guard descriptor >= 0 else { throw fail(.unavailable, "socket() failed: \(String(cString: strerror(errno)))") }
        defer {
            state.withLock { $0.descriptor = -1 }
            close(descriptor)
        }
        let cancelled = state.withLock { state in
            state.descriptor = descriptor
            return state.cancelled
        }
        if cancelled { throw CancellationError() }

        try connect(descriptor, limit: request.timeouts.connect)
        if let trusted = request.trustedServerUIDs,
           let untrusted = UntrustedSocketPeer.check(connected: descriptor, address: socketPath, trustedUIDs: trusted) {
            throw untrusted
        }
        let deadline = start.advanced(by: .milliseconds(Int64(request.timeouts.total * 1000)))
        try send(descriptor, requestBytes(), deadline: deadline)
        return try receive(descriptor, deadline: deadline)
    }

    private func connect(_ descriptor: Int32, limit: Double) throws {
        guard let address = UnixSocketAddress(path: socketPath) else {
            throw fail(.invalidInput, "the socket path is longer than a Unix socket path may be")
        }
        // A Unix socket's connect waits only while the listener's backlog is full, for as long as
        // the send timeout allows.
        setTimeout(descriptor, SO_SNDTIMEO, seconds: limit)
        let result = address.withSocketAddress { Glibc.connect(descriptor, $0, $1) }
        guard result != 0 else { return }
        let code = errno
        if isCancelled { throw CancellationError() }
        switch code {
        case ENOENT:
            throw fail(.unavailable, "no socket at this path")
        case ECONNREFUSED:
            throw fail(.unavailable, "connection refused: nothing listens on the socket")
        case EAGAIN, EINPROGRESS:
            throw fail(.timeout, "no connection within the time limit (connect \(request.timeouts.connect)s)")
        case EACCES, EPERM:
            throw fail(.unavailable, "permission denied",
                       remedy: "the socket's or its directory's permissions do not admit this user")
        default:
            throw fail(.unavailable, "connect() failed: \(String(cString: strerror(code)))")
        }
    }

    private func requestBytes() -> [UInt8] {
        var head = "\(request.method) \(target) HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n"
        for (name, value) in request.headers where !["host", "connection", "content-length"].contains(name.lowercased()) {
            head += "\(name): \(value)\r\n"
        }
        if !request.body.isEmpty || request.method == "POST" || request.method == "PUT" {
            head += "content-length: \(request.body.count)\r\n"
        }
        return Array((head + "\r\n").utf8) + request.body
    }

    private func send(_ descriptor: Int32, _ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        var offset = 0
        while offset < bytes.count {
            try limitNextWait(descriptor, SO_SNDTIMEO, deadline: deadline)
            let count = bytes.withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if count > 0 { offset += count; continue }
            try interrupted(errno, doing: "sending the request")
        }
    }

    private func receive(_ descriptor: Int32, deadline: ContinuousClock.Instant) throws -> HTTPResponse {
        var received: [UInt8] = []
        var head: (status: Int, headers: HTTPHeaders, length: Int?, bodyStart: Int)?
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            if let head, let length = head.length, received.count - head.bodyStart >= length { break }
            try limitNextWait(descriptor, SO_RCVTIMEO, deadline: deadline)
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count == 0 { break }
            if count < 0 {
                try interrupted(errno, doing: "waiting for the answer")
                continue
            }
            received.append(contentsOf: buffer[..<count])
            if head == nil {
                head = try parseHead(received)
                if head == nil, received.count > 64 << 10 {
                    throw fail(.malformedResponse, "the answer's header is longer than 64 KB")
                }
            }
            if received.count - (head?.bodyStart ?? 0) > request.maxResponseBytes {
                throw fail(.malformedResponse, "the response is larger than \(request.maxResponseBytes) bytes")
            }
        }
        if isCancelled { throw CancellationError() }
        guard let head else {
            throw fail(.unavailable, "the connection broke: the agent closed it without an answer")
        }
        let body = Array(received[head.bodyStart...])
        if let length = head.length, body.count < length {
            throw fail(.unavailable, "the connection broke: the answer ended after \(body.count) of \(length) bytes")
        }
        return HTTPResponse(status: head.status, headers: head.headers, body: head.length.map { Array(body.prefix($0)) } ?? body)
    }

    /// The status, headers and body length of a complete response head in `bytes`; nil while the
    /// head is incomplete. The head is read as bytes (lines end at CRLF) and only names and values
    /// become strings: a probe reads one answer, and reading the head as characters was the
    /// costliest part of its own work.
    private func parseHead(_ bytes: [UInt8]) throws -> (status: Int, headers: HTTPHeaders, length: Int?, bodyStart: Int)? {
        guard let headEnd = Self.endOfHead(in: bytes) else { return nil }
        var lineEnd = Self.endOfLine(in: bytes, from: 0, before: headEnd)
        guard let status = Self.statusCode(bytes[..<lineEnd]) else {
            throw fail(.malformedResponse, "the answer does not start with an HTTP/1.1 status line")
        }
        var headers = HTTPHeaders()
        while lineEnd < headEnd {
            let lineStart = lineEnd + 2
            lineEnd = Self.endOfLine(in: bytes, from: lineStart, before: headEnd)
            let line = bytes[lineStart..<lineEnd]
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                throw fail(.malformedResponse, "the answer has a header line without a colon")
            }
            let value = line[(colon + 1)...].drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
            headers.add(String(decoding: line[..<colon], as: UTF8.self), String(decoding: value, as: UTF8.self))
        }
        if headers["transfer-encoding"] != nil {
            throw fail(.malformedResponse, "the answer is chunked, which the agent never sends")
        }
        var length: Int?
        if let text = headers["content-length"] {
            guard let value = Int(text), value >= 0 else {
                throw fail(.malformedResponse, "the answer's content-length is not a number")
            }
            guard value <= request.maxResponseBytes else {
                throw fail(.malformedResponse, "the response is larger than \(request.maxResponseBytes) bytes")
            }
            length = value
        }
        if request.method == "HEAD" || status == 204 || status == 304 { length = 0 }
        return (status, headers, length, headEnd + 4)
    }

    /// Where the first CRLF CRLF in `bytes` starts: the end of the head's last line.
    private static func endOfHead(in bytes: [UInt8]) -> Int? {
        var index = 0
        while index + 3 < bytes.count {
            if bytes[index] == 13, bytes[index + 1] == 10, bytes[index + 2] == 13, bytes[index + 3] == 10 { return index }
            index += 1
        }
        return nil
    }

    /// Where the line that starts at `start` ends: its CRLF, or `end` for the head's last line.
    private static func endOfLine(in bytes: [UInt8], from start: Int, before end: Int) -> Int {
        var index = start
        while index + 1 < end, !(bytes[index] == 13 && bytes[index + 1] == 10) { index += 1 }
        return index + 1 < end ? index : end
    }

    /// The status code of a status line (`HTTP/1.x CODE [REASON]`, fields separated by spaces),
    /// nil when the line is not one.
    private static func statusCode(_ line: ArraySlice<UInt8>) -> Int? {
        let space = UInt8(ascii: " ")
        guard line.starts(with: "HTTP/1.".utf8), let versionEnd = line.firstIndex(of: space) else { return nil }
        let code = line[versionEnd...].drop { $0 == space }.prefix { $0 != space }
        guard code.count == 3, code.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
        let status = code.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        return (100...599).contains(status) ? status : nil
    }

    private var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// Bounds the next blocking send or receive by what is left until `deadline`.
    private func limitNextWait(_ descriptor: Int32, _ option: Int32, deadline: ContinuousClock.Instant) throws {
        let left = ContinuousClock.now.duration(to: deadline)
        guard left > .zero else {
            throw fail(.timeout, "no answer within the time limit (connect \(request.timeouts.connect)s, total \(request.timeouts.total)s)")
        }
        setTimeout(descriptor, option, seconds: max(0.001, Double(left.components.seconds) + Double(left.components.attoseconds) * 1e-18))
    }

    /// Returns when `code` means "try again" (a signal, or a wait whose time limit is checked on
    /// the next turn); throws otherwise.
    private func interrupted(_ code: Int32, doing activity: String) throws {
        if isCancelled { throw CancellationError() }
        switch code {
        case EINTR, EAGAIN: return
        case EPIPE, ECONNRESET: throw fail(.unavailable, "the connection broke while \(activity)")
        default: throw fail(.unavailable, "\(activity) failed: \(String(cString: strerror(code)))")
        }
    }

    private func setTimeout(_ descriptor: Int32, _ option: Int32, seconds: Double) {
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1_000_000))
        setsockopt(descriptor, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
    }
}
