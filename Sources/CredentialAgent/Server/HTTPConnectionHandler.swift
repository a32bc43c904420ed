import CredentialModel
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Synchronization

/// Limits that keep one slow or malicious client from costing the others.
public struct ServerLimits: Sendable, Equatable {
    /// Request line and header fields together; more is answered 431.
    public var maxHeaderBytes = 8 * 1024
    /// Request bodies (no route takes one); more is answered 413.
    public var maxBodyBytes = 4 * 1024
    /// A connection that sent no bytes for this long is closed, unless it waits for an answer or
    /// is in the middle of sending a request.
    public var idleTimeout: TimeAmount
    /// A request not complete (head and body) this long after its first byte is answered 408.
    public var requestTimeout: TimeAmount
    public var maxConnections: Int

    /// The limits the `socket:` section sets, with the fixed header and body caps.
    public init(socket: SocketConfig = SocketConfig()) {
        idleTimeout = TimeAmount(socket.idleTimeout)
        requestTimeout = TimeAmount(socket.requestTimeout)
        maxConnections = socket.maxConnections
    }
}

/// What every connection shares: the store, the refreshers, who may read secrets, telemetry.
public final class ServerContext: Sendable {
    let store: CredentialStore
    let refreshers: RefresherDirectory
    let metrics: AgentMetrics
    let logger: Logger
    let limits: ServerLimits
    let now: @Sendable () -> Date
    private let policyBox: NIOLockedValueBox<PeerPolicy>
    /// Increases with every policy change, so that connections can cache their verdict.
    private let policyGeneration = Atomic<Int>(0)

    public init(store: CredentialStore, refreshers: RefresherDirectory, metrics: AgentMetrics, policy: PeerPolicy,
                limits: ServerLimits = ServerLimits(), logger: Logger, now: @escaping @Sendable () -> Date = Date.init) {
        self.store = store
        self.refreshers = refreshers
        self.metrics = metrics
        self.logger = logger
        self.limits = limits
        self.now = now
        self.policyBox = NIOLockedValueBox(policy)
    }

    /// Who may read secrets; replaced on reload.
    public var policy: PeerPolicy {
        get { policyBox.withLockedValue { $0 } }
        set {
            policyBox.withLockedValue { $0 = newValue }
            policyGeneration.add(1, ordering: .releasing)
        }
    }

    var currentPolicyGeneration: Int { policyGeneration.load(ordering: .acquiring) }
}

/// Sent down every connection's pipeline when the agent stops: finish the request in flight,
/// then close.
struct ServerStopping: Sendable {}

/// Sits before the HTTP decoder and tells the connection's ``HTTPConnectionHandler`` that bytes
/// arrived, which the decoder does not: a request head sent a byte at a time is otherwise invisible
/// until complete, and its deadline has to run from its first byte. Both handlers live on the
/// channel's event loop, so the marker calls the handler directly.
final class RequestBytesMarker: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    private let connection: HTTPConnectionHandler

    init(connection: HTTPConnectionHandler) {
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.requestBytesArrived()
        context.fireChannelRead(data)
    }
}

/// One connection of the socket API: reads requests, answers them from the store, and for long
/// polls and forced refreshes completes the answer later on the same event loop.
///
/// Responses are encoded here rather than by NIO's response encoder: a served credential is one
/// prebuilt buffer (status line, headers and body) written as it is. Requests that arrive while an
/// answer is pending (pipelining behind a long poll) wait in order, and while they wait the
/// connection is not read further (backpressure); a client that still gets more than
/// ``maxQueuedBytes`` queued is disconnected.
final class HTTPConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Bytes of requests received while an answer is pending; more than this closes the connection.
    static let maxQueuedBytes = 64 * 1024
    private var queued: [(part: HTTPServerRequestPart, bytes: Int)] = []
    private var queuedBytes = 0
    /// A read the channel asked for while requests were queued; passed on once they are handled.
    private var readHeld = false

    private let shared: ServerContext
    private var peer: PeerIdentity?
    /// Whether the peer may read secrets, under the policy of the given generation.
    private var verdict: (generation: Int, allowed: Bool)?
    private var deniedLogged = false

    private struct PendingRequest {
        var head: HTTPRequestHead
        var bodyBytes = 0
        var rejection: (HTTPResponseStatus, String, String)?
    }
    private var request: PendingRequest?
    /// The request being answered (between its end and its response's end).
    private var answering: HTTPRequestHead?
    /// When the first byte of the request being received arrived; nil between requests.
    private var requestStarted: NIODeadline?
    private var requestDeadline: Scheduled<Void>?
    private var longPoll: (name: String, id: Int, timeout: Scheduled<Void>)?
    private var stopping = false

    init(shared: ServerContext) {
        self.shared = shared
    }

    // MARK: Connection events

    func channelActive(context: ChannelHandlerContext) {
        shared.metrics.connectionOpened()
        if let provider = context.channel as? any SocketOptionProvider {
            // On the channel's own event loop this completes before any request is read.
            let future: EventLoopFuture<UCred> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
            future.assumeIsolated().whenSuccess { credentials in
                self.peer = PeerIdentity(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
            }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        shared.metrics.connectionClosed()
        requestDeadline?.cancel()
        if let longPoll {
            longPoll.timeout.cancel()
            shared.store.cancelWait(longPoll.name, id: longPoll.id)
            self.longPoll = nil
        }
        context.fireChannelInactive()
    }

    /// Between requests, new bytes start the next one (while answering they queue up, and the
    /// queue is timed when it is drained).
    func requestBytesArrived() {
        if requestStarted == nil, request == nil, answering == nil, queued.isEmpty { requestStarted = .now() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ServerStopping {
            stopping = true
            if let longPoll, shared.store.cancelWait(longPoll.name, id: longPoll.id) {
                longPoll.timeout.cancel()
                self.longPoll = nil
                respond(context, .notModified, route: "/v1/credentials/{name}")
            } else if answering == nil, request == nil {
                context.close(promise: nil)
            }
        } else if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            if answering == nil, request == nil, requestStarted == nil { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// A request begun but not complete by the end of a read gets a deadline, counted from its
    /// first byte; the usual request (complete in one read) never pays for a timer.
    func channelReadComplete(context: ChannelHandlerContext) {
        armRequestDeadline(context)
        context.fireChannelReadComplete()
    }

    private func armRequestDeadline(_ context: ChannelHandlerContext) {
        guard requestDeadline == nil, let started = requestStarted ?? (request != nil ? .now() : nil) else { return }
        requestStarted = started
        requestDeadline = context.eventLoop.assumeIsolated().scheduleTask(deadline: started + shared.limits.requestTimeout) {
            self.requestTimedOut(context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard answering == nil, context.channel.isActive else {
            context.close(promise: nil)
            return
        }
        // Malformed HTTP: answer once, then close; the parser cannot continue on this stream.
        stopping = true
        request = nil
        answering = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        if let parserError = error as? HTTPParserError, parserError == .headerOverflow {
            respondError(context, .requestHeaderFieldsTooLarge, "header_too_large",
                         "request headers exceed \(shared.limits.maxHeaderBytes) bytes", route: "invalid")
        } else {
            respondError(context, .badRequest, "bad_request", "the request is not valid HTTP/1.1", route: "invalid")
        }
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard answering == nil, queued.isEmpty else {
            let bytes = Self.size(of: part)
            queued.append((part, bytes))
            queuedBytes += bytes
            if queuedBytes > Self.maxQueuedBytes { context.close(promise: nil) }
            return
        }
        read(context, part)
    }

    /// Handles requests that queued up behind an answer that has now been written; one left
    /// incomplete is timed from now.
    private func drainQueue(_ context: ChannelHandlerContext) {
        while answering == nil, !queued.isEmpty, context.channel.isActive {
            let next = queued.removeFirst()
            queuedBytes -= next.bytes
            read(context, next.part)
        }
        if readHeld, queued.isEmpty {
            readHeld = false
            context.read()
        }
        if answering == nil, request != nil, context.channel.isActive { armRequestDeadline(context) }
    }

    /// Stops reading while requests wait in the queue: the client gets no further ahead.
    func read(context: ChannelHandlerContext) {
        if queued.isEmpty { context.read() } else { readHeld = true }
    }

    /// About how many bytes `part` took on the wire.
    private static func size(of part: HTTPServerRequestPart) -> Int {
        switch part {
        case let .head(head):
            var size = head.uri.utf8.count + 16
            for (name, value) in head.headers { size += name.utf8.count + value.utf8.count + 4 }
            return size
        case let .body(buffer): return buffer.readableBytes
        case .end: return 0
        }
    }

    private func read(_ context: ChannelHandlerContext, _ part: HTTPServerRequestPart) {
        switch part {
        case let .head(head):
            var pending = PendingRequest(head: head)
            if Self.size(of: part) > shared.limits.maxHeaderBytes {
                pending.rejection = (.requestHeaderFieldsTooLarge, "header_too_large",
                                     "request headers exceed \(shared.limits.maxHeaderBytes) bytes")
            }
            request = pending
        case let .body(buffer):
            request?.bodyBytes += buffer.readableBytes
            if let bytes = request?.bodyBytes, bytes > shared.limits.maxBodyBytes, request?.rejection == nil {
                request?.rejection = (.payloadTooLarge, "payload_too_large", "request bodies are limited to \(shared.limits.maxBodyBytes) bytes")
            }
        case .end:
            requestDeadline?.cancel()
            requestDeadline = nil
            requestStarted = nil
            guard let pending = request else { return }
            request = nil
            answering = pending.head
            if let (status, code, message) = pending.rejection {
                stopping = true
                respondError(context, status, code, message, route: "invalid")
                return
            }
            route(context, pending.head)
        }
    }

    private func requestTimedOut(_ context: ChannelHandlerContext) {
        requestDeadline = nil
        guard answering == nil, request != nil || requestStarted != nil else { return }
        request = nil
        requestStarted = nil
        answering = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        stopping = true
        respondError(context, .requestTimeout, "request_timeout", "the request did not arrive in time", route: "invalid")
    }

    private func route(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let route: Route
        switch Route.parse(method: head.method.rawValue, uri: head.uri) {
        case let .success(parsed): route = parsed
        case .failure(.notFound):
            return respondError(context, .notFound, "not_found", "no such route: \(head.method.rawValue) \(Self.pathOnly(head.uri))",
                                route: "unknown")
        case let .failure(.methodNotAllowed(allowed)):
            return respondError(context, .methodNotAllowed, "method_not_allowed", "use \(allowed) on this path",
                                extraHeaders: [("allow", allowed)], route: "unknown")
        case let .failure(.badRequest(message)):
            return respondError(context, .badRequest, "bad_request", message, route: "/v1/credentials/{name}")
        }
        switch route {
        case .health:
            respond(context, .ok, body: Self.healthBody, route: route.template)
        case .ready:
            ready(context, route)
        case .metrics:
            respond(context, .ok, body: ByteBuffer(bytes: shared.metrics.exposition(shared.store.snapshots(), now: shared.now())), contentType: "text/plain; version=0.0.4",
                    route: route.template)
        case .list:
            list(context, route)
        case let .credential(name, query):
            guard authorized(context, route) else { return }
            credential(context, name: name, query: query, route: route)
        case let .refresh(name):
            guard authorized(context, route) else { return }
            guard let refresher = shared.refreshers[name] else { return unknownCredential(context, name, route) }
            awaitRefresh(context, refresher, minValid: 0, force: true, route: route)
        }
    }

    private static let healthBody = ByteBuffer(string: #"{"status":"ok"}"#)

    private static func pathOnly(_ uri: String) -> String {
        String(uri.prefix { $0 != "?" }.prefix(200))
    }

    private func authorized(_ context: ChannelHandlerContext, _ route: Route) -> Bool {
        let generation = shared.currentPolicyGeneration
        if let verdict, verdict.generation == generation, verdict.allowed { return true }
        if let peer, shared.policy.allows(peer) {
            verdict = (generation, true)
            return true
        }
        shared.metrics.peerDenied()
        if !deniedLogged {
            deniedLogged = true
            shared.logger.warning("peer not allowed to read secrets", metadata: [
                "peer.uid": "\(peer.map { String($0.uid) } ?? "unknown")",
                "peer.gid": "\(peer.map { String($0.gid) } ?? "unknown")",
                "peer.pid": "\(peer.map { String($0.pid) } ?? "unknown")",
            ])
        }
        respondError(context, .forbidden, "forbidden",
                     "this process (uid \(peer.map { String($0.uid) } ?? "unknown")) may not read secrets; see socket.allow",
                     route: route.template)
        return false
    }

    private func unknownCredential(_ context: ChannelHandlerContext, _ name: String, _ route: Route) {
        respondError(context, .notFound, "not_found", "no credential named '\(name)'", route: route.template)
    }

    private func list(_ context: ChannelHandlerContext, _ route: Route) {
        let now = shared.now()
        let items: [JSONValue] = shared.store.snapshots().map { snapshot in
            let machine = snapshot.machine
            return .object([
                ("name", .string(snapshot.name)), ("kind", .string(snapshot.config.kind.rawValue)),
                ("provider", .string(snapshot.config.provider.rawValue)),
                ("state", .string(snapshot.state(at: now).rawValue)), ("version", .int(snapshot.version)),
                ("expires_at", .timestamp(machine.held?.credential.expiresAt)),
                ("refresh_at", .timestamp(machine.held.map { _ in machine.nextFetch(now: now) })),
                ("last_error", .optional(machine.lastFailure?.message)),
                ("last_error_code", .optional(machine.lastFailure?.code.description)),
            ])
        }
        respond(context, .ok, body: ByteBuffer(bytes: JSONValue.object([("credentials", .array(items))]).bytes),
                route: route.template)
    }

    private func ready(_ context: ChannelHandlerContext, _ route: Route) {
        let now = shared.now()
        let notReady = shared.store.snapshots().filter { $0.machine.servable(at: now) == nil }.map { JSONValue.string($0.name) }
        if notReady.isEmpty {
            respond(context, .ok, body: ByteBuffer(string: #"{"status":"ready"}"#), route: route.template)
        } else {
            let body = JSONValue.object([("status", .string("not_ready")), ("not_ready", .array(notReady))])
            respond(context, .serviceUnavailable, body: ByteBuffer(bytes: body.bytes), route: route.template)
        }
    }

    private func credential(_ context: ChannelHandlerContext, name: String, query: Route.CredentialQuery, route: Route) {
        guard let snapshot = shared.store.snapshot(name) else { return unknownCredential(context, name, route) }
        if let wait = query.wait, let version = query.version {
            return startLongPoll(context, name: name, version: version, wait: wait, route: route)
        }
        if let minValid = query.minValid {
            if !snapshot.machine.answersClient(minValid: minValid, force: false, at: shared.now()),
               let refresher = shared.refreshers[name] {
                return awaitRefresh(context, refresher, minValid: minValid, force: false, route: route)
            }
        }
        serve(context, snapshot, route: route)
    }

    /// The credential if servable, else 503 with when to retry.
    private func serve(_ context: ChannelHandlerContext, _ snapshot: CredentialSnapshot, route: Route) {
        let now = shared.now()
        if let head = answering, head.version == .http1_1, head.isKeepAlive, !stopping,
           let response = snapshot.servableKeepAliveResponse(at: now) {
            answering = nil
            context.writeAndFlush(wrapOutboundOut(response), promise: nil)
            shared.metrics.credentialServed()
            return drainQueue(context)
        }
        if let body = snapshot.servableBody(at: now) {
            return respond(context, .ok, body: body, secret: true, route: route.template)
        }
        let machine = snapshot.machine
        let retry = max(1, Int(machine.nextFetch(now: now).timeIntervalSince(now).rounded(.up)))
        var message = "'\(snapshot.name)' has no valid credential (state \(machine.state(at: now).rawValue))"
        if let failure = machine.lastFailure { message += ": \(failure.message)" }
        respondError(context, .serviceUnavailable, "unavailable", message, failure: machine.lastFailure,
                     extraHeaders: [("retry-after", String(retry))], route: route.template)
    }

    private func startLongPoll(_ context: ChannelHandlerContext, name: String, version: Int, wait: TimeInterval, route: Route) {
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        let registration = shared.store.waitForVersion(name, otherThan: version) { snapshot in
            bound.eventLoop.execute {
                let (handler, context) = bound.value
                guard let poll = handler.longPoll, poll.name == name else { return }
                poll.timeout.cancel()
                handler.longPoll = nil
                if let snapshot { handler.serve(context, snapshot, route: route) }
                else { handler.unknownCredential(context, name, route) }
            }
        }
        switch registration {
        case .unknown:
            unknownCredential(context, name, route)
        case let .changed(snapshot):
            serve(context, snapshot, route: route)
        case let .waiting(id):
            let timeout = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(wait * 1000))) {
                guard self.shared.store.cancelWait(name, id: id) else { return }
                self.longPoll = nil
                self.respond(context, .notModified, route: route.template)
            }
            longPoll = (name, id, timeout)
        }
    }

    private func awaitRefresh(_ context: ChannelHandlerContext, _ refresher: CredentialRefresher, minValid: TimeInterval,
                              force: Bool, route: Route) {
        let promise = context.eventLoop.makePromise(of: Result<CredentialSnapshot, RefreshFailure>.self)
        promise.completeWithTask { await refresher.credential(minValid: minValid, force: force) }
        promise.futureResult.assumeIsolated().whenSuccess { result in
            switch result {
            case let .success(snapshot):
                self.serve(context, snapshot, route: route)
            case let .failure(failure):
                // min_valid falls back to a credential that is still servable, only shorter-lived.
                if !force, let snapshot = self.shared.store.snapshot(refresher.config.name.rawValue),
                   snapshot.machine.servable(at: self.shared.now()) != nil {
                    return self.serve(context, snapshot, route: route)
                }
                self.respondError(context, .serviceUnavailable, "refresh_failed",
                                  "refreshing '\(refresher.config.name)' failed: \(failure.message)", failure: failure,
                                  extraHeaders: [("retry-after", "1")], route: route.template)
            }
        }
    }

    // MARK: Responses

    /// `{"error":{"code","message"}}`, plus `last_error_code` when a refresh `failure` is the cause.
    private func respondError(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ code: String, _ message: String,
                              failure: RefreshFailure? = nil, extraHeaders: [(String, String)] = [], route: String) {
        var fields: [(String, JSONValue)] = [("code", .string(code)), ("message", .string(message))]
        if let failure { fields.append(("last_error_code", .string(failure.code.description))) }
        let body = JSONValue.object([("error", .object(fields))])
        respond(context, status, body: ByteBuffer(bytes: body.bytes), extraHeaders: extraHeaders, route: route)
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, body: ByteBuffer? = nil,
                         contentType: String = "application/json", secret: Bool = false,
                         extraHeaders: [(String, String)] = [], route: String) {
        guard let head = answering else { return }
        answering = nil
        let close = stopping || !head.isKeepAlive
        var out = context.channel.allocator.buffer(capacity: 160 + (body?.readableBytes ?? 0))
        out.writeString("HTTP/\(head.version.major).\(head.version.minor) \(status.code) \(status.reasonPhrase)\r\n")
        if let body {
            out.writeString("content-type: \(contentType)\r\ncontent-length: \(body.readableBytes)\r\n")
        } else {
            out.writeString("content-length: 0\r\n")
        }
        if secret { out.writeString("cache-control: no-store\r\n") }
        if close {
            out.writeString("connection: close\r\n")
        } else if head.version.major == 1, head.version.minor == 0 {
            out.writeString("connection: keep-alive\r\n")
        }
        for (name, value) in extraHeaders { out.writeString("\(name): \(value)\r\n") }
        out.writeString("\r\n")
        if var body { out.writeBuffer(&body) }
        let written = context.writeAndFlush(wrapOutboundOut(out))
        if status == .ok, route == Route.credentialTemplate {
            shared.metrics.credentialServed()
        } else {
            shared.metrics.request(route: route, status: Int(status.code))
        }
        if close {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            drainQueue(context)
        }
    }
}
