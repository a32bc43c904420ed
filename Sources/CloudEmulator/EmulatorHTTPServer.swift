import CloudAuth
import NIOCore
import NIOHTTP1
import NIOPosix

/// One parsed request as the emulator's routes (and tests' stub endpoints) see it.
public struct EmulatorRequest: Sendable {
    public var method: String
    /// As sent: percent-encoded.
    public var path: String
    /// The query string as sent, without `?`.
    public var rawQuery: String?
    public var query: [(name: String, value: String)]
    public var headers: CloudAuth.HTTPHeaders
    public var body: [UInt8]

    init(method: String, uri: String, headers: CloudAuth.HTTPHeaders, body: [UInt8]) {
        self.method = method
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = String(parts[0])
        rawQuery = parts.count > 1 ? String(parts[1]) : nil
        query = rawQuery.map(FormEncoding.decode) ?? []
        self.headers = headers
        self.body = body
    }

    /// The first query parameter `name`.
    public func parameter(_ name: String) -> String? { query.first { $0.name == name }?.value }

    /// The body as `application/x-www-form-urlencoded` fields.
    var form: [(name: String, value: String)] { FormEncoding.decode(String(decoding: body, as: UTF8.self)) }
}

/// One answer; `delay` holds it back (failure injection's stall); `hangUp` closes the connection
/// instead of answering (an endpoint that is down).
public struct EmulatorResponse: Sendable {
    public var status: Int
    public var headers: CloudAuth.HTTPHeaders
    public var body: [UInt8]
    /// Seconds to hold the answer back.
    public var delay: Double = 0
    public var hangUp = false

    public init(status: Int, headers: CloudAuth.HTTPHeaders = [:], body: [UInt8] = [], delay: Double = 0, hangUp: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.delay = delay
        self.hangUp = hangUp
    }

    static let noAnswer = EmulatorResponse(status: 0, headers: [:], body: [], hangUp: true)

    static func json(_ status: Int, _ object: [String: any Sendable]) -> EmulatorResponse {
        let body = (try? JWT.jsonBytes(object)) ?? Array("{}".utf8)
        return EmulatorResponse(status: status, headers: ["Content-Type": "application/json; charset=utf-8"], body: body)
    }

    public static func text(_ status: Int, _ text: String, contentType: String = "application/text") -> EmulatorResponse {
        EmulatorResponse(status: status, headers: ["Content-Type": contentType], body: Array(text.utf8))
    }
}

/// A loopback HTTP/1.1 listener that hands every complete request to `route`: each cloud of the
/// emulator, and the stub endpoints of client tests.
public final class EmulatorHTTPServer: Sendable {
    let channel: any Channel
    public let port: Int

    static let maxBodyBytes = 1 << 20

    private init(channel: any Channel, port: Int) {
        self.channel = channel
        self.port = port
    }

    public static func start(host: String = "127.0.0.1", port: Int = 0,
                      route: @escaping @Sendable (EmulatorRequest) -> EmulatorResponse) async throws -> EmulatorHTTPServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(route: route))
                }
            }
            .bind(host: host, port: port).get()
        return EmulatorHTTPServer(channel: channel, port: channel.localAddress?.port ?? port)
    }

    /// Closes the listener and waits until it is closed.
    public func stop() async throws {
        try await channel.close()
    }

    /// Closes the listener without waiting (for a test's `defer`).
    public func close() {
        channel.close(promise: nil)
    }
}

/// Collects one request at a time and writes the route's answer, after its delay if any.
private final class RequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let route: @Sendable (EmulatorRequest) -> EmulatorResponse
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(route: @escaping @Sendable (EmulatorRequest) -> EmulatorResponse) { self.route = route }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body = []
            tooLarge = false
        case .body(let buffer):
            if body.count + buffer.readableBytes > EmulatorHTTPServer.maxBodyBytes { tooLarge = true }
            else { body.append(contentsOf: buffer.readableBytesView) }
        case .end:
            guard let head else { return }
            self.head = nil
            var headers = CloudAuth.HTTPHeaders()
            for (name, value) in head.headers { headers.add(name, value) }
            let response = tooLarge
                ? EmulatorResponse.text(413, "request body too large")
                : route(EmulatorRequest(method: head.method.rawValue, uri: head.uri, headers: headers, body: body))
            if response.delay > 0 {
                context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(.seconds(response.delay))) {
                    self.write(response, keepAlive: head.isKeepAlive, context: context)
                }
            } else {
                write(response, keepAlive: head.isKeepAlive, context: context)
            }
        }
    }

    private func write(_ response: EmulatorResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        if response.hangUp {
            context.close(promise: nil)
            return
        }
        var headers = NIOHTTP1.HTTPHeaders()
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: response.status),
                                    headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))),
                      promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
