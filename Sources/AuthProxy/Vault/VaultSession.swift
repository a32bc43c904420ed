import CloudAuth
import Logging
import NIOCore
import NIOHTTP1

/// One client connection of a ``VaultProxy`` and the upstream connection it uses, both on the
/// client's event loop. Requests are served one at a time (NIO's pipelining handler holds the
/// next until the response before it is complete):
///
/// 1. The head is checked: the refusal decided at accept, framing that could be read two ways,
///    on loopback TCP a `Host` other than this machine's or a web page's request,
///    `X-Vault-Request`, a request to wrap the answer, `auth/token/revoke-self`, `deny_paths`, a
///    current token. A refusal is answered in Vault's error shape, and the connection closed when
///    a body would follow.
/// 2. A body up to `retryableBodyLimit` is held until complete, then the request is sent with the
///    agent's token; a larger body is streamed as it comes (reads follow Vault's pace).
/// 3. Vault's 403 to a held request is held too (up to 64 KB): the agent is asked for a fresh
///    token and the request is sent once more with it; the client sees only the second answer.
///    Any other answer is relayed as it arrives, the token (and those sent before it) masked
///    wherever Vault echoes one; an answer in a content coding, where it could not be found, is
///    refused with 502.
///
/// A request whose parts stop arriving for `handshake_timeout` is answered 408 and closed; a
/// connection with no request for `idle_timeout` is closed.
///
/// The session is the handler of the client's channel, behind NIO's HTTP server pipeline (which
/// holds a pipelined request until the response before it is complete).
final class VaultSession: ClientSession {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart

    /// What has come of the current request's answer.
    private enum Response {
        /// Nothing yet.
        case waiting
        /// A 403 to a retryable request, kept while the proxy logs in again.
        case held(HTTPResponseHead, ByteBuffer)
        /// Asking the agent for a fresh token.
        case reloggingIn
        /// Relayed to the client as it arrives.
        case relaying(TokenRedactor)
    }

    /// The request being served.
    private struct Exchange {
        let serial: Int
        let head: HTTPRequestHead
        /// Keep the client connection open after the response.
        var keepAlive: Bool
        /// The body parts not yet sent upstream (all of them while the body is held).
        var body: [ByteBuffer] = []
        var bodyBytes = 0
        /// The body is held whole, so the request can be sent again.
        var retryable = true
        /// The client's end of the request has arrived.
        var complete = false
        /// The head went upstream (in the current attempt).
        var sent = false
        var token: Secret
        /// Sent again after a 403 (or after the reused connection it went on turned out closed).
        var retriedWithFreshToken = false
        var resentOnNewConnection = false
        var response = Response.waiting
        var status: HTTPResponseStatus?
    }

    private enum TimerPurpose {
        /// The client is in the middle of a request (or has not sent its first one).
        case request
        /// No request in progress.
        case idle
    }

    let proxy: VaultProxy
    private let refusal: ProxyRefusal?
    private(set) var client: ChannelHandlerContext?
    /// The upstream connection, once connected; nil while connecting or after it closed.
    private(set) var upstream: ChannelHandlerContext?
    private var connecting = false
    /// The upstream connection served an earlier request (so it may have been closed by Vault
    /// while idle, and a request lost on it can be sent again).
    private var upstreamReused = false
    private var upstreamKeepAlive = true
    private var exchange: Exchange?
    private var serials = 0
    /// A refused request's body is dropped until its end.
    private var discarding = false
    /// Until when the session waits for what it waits for (a request's next part, or the next
    /// request): moved at every part of every request.
    private var deadline: MovingDeadline?
    /// What the session waits for: what the deadline passing means.
    private var waitingFor = TimerPurpose.request
    private var isClosed = false
    private var stopping = false

    init(proxy: VaultProxy, refusal: ProxyRefusal?) {
        self.proxy = proxy
        self.refusal = refusal
    }

    private var name: String { proxy.configuration.common.credential }
    private var address: String { proxy.configuration.upstream.address }

    // MARK: Client side

    func clientActive(_ context: ChannelHandlerContext) {
        client = context
        deadline = MovingDeadline(on: context.eventLoop) { [self] in timedOut() }
        arm(.request)
        try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head): requestHead(head)
        case let .body(bytes): requestBody(bytes)
        case .end: requestEnd()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        clientFailed(error)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ProxyStopping { proxyStopping() }
        context.fireUserInboundEventTriggered(event)
    }

    /// Whether the client may be read: always, except while a streamed body waits for Vault.
    var clientMayRead: Bool {
        guard let exchange, !exchange.retryable, !exchange.complete else { return true }
        return exchange.sent && (upstream?.channel.isWritable ?? false)
    }

    /// Whether Vault's answer may be read: while it is relayed, only as fast as the client takes it.
    var upstreamMayRead: Bool {
        guard case .relaying = exchange?.response else { return true }
        return client?.channel.isWritable ?? false
    }

    private func requestHead(_ head: HTTPRequestHead) {
        guard !isClosed else { return }
        deadline?.clear()
        if let refusal { return answer(.refused(refusal), to: head, close: true) }
        if let problem = VaultHeaders.framingProblem(head) { return answer(.badRequest(credential: name, problem), to: head, close: true) }
        let configuration = proxy.configuration
        if case .loopbackTCP = configuration.common.listener {
            if let problem = VaultHeaders.hostProblem(head) { return answer(.wrongHost(credential: name, problem), to: head) }
            if let problem = VaultHeaders.browserProblem(head) { return answer(.browserRequest(credential: name, problem), to: head) }
        }
        if configuration.requireRequestHeader, !head.headers["x-vault-request"].contains(where: { $0.lowercased() == "true" }) {
            return answer(.missingRequestHeader(credential: name), to: head)
        }
        if let field = VaultHeaders.wrappingField(head) { return answer(.wrappingRefused(credential: name, field: field), to: head) }
        let path = VaultHeaders.routedPath(head.uri)
        if VaultHeaders.revokesOwnToken(path) { return answer(.revokeSelfRefused(credential: name), to: head) }
        if let prefix = VaultHeaders.deniedPrefix(path, configuration.denyPaths) {
            return answer(.deniedPath(credential: name, path: path, prefix: prefix), to: head)
        }
        guard let token = proxy.token() else { return answer(.noToken(credential: name), to: head) }
        serials += 1
        exchange = Exchange(serial: serials, head: head, keepAlive: head.isKeepAlive && head.version.keepsConnections && !stopping,
                            token: token)
        arm(.request)
        if VaultHeaders.expectsContinue(head) {
            client?.writeAndFlush(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: head.version, status: .continue))),
                                  promise: nil)
        }
    }

    private func requestBody(_ bytes: ByteBuffer) {
        guard !discarding, var exchange, !exchange.complete else { return }
        arm(.request)
        if exchange.retryable || !exchange.sent {
            exchange.body.append(bytes)
            exchange.bodyBytes += bytes.readableBytes
            let overLimit = exchange.retryable && exchange.bodyBytes > proxy.configuration.retryableBodyLimit
            if overLimit { exchange.retryable = false }
            self.exchange = exchange
            if overLimit { startSending() }
        } else {
            upstream?.writeAndFlush(NIOAny(HTTPClientRequestPart.body(.byteBuffer(bytes))), promise: nil)
        }
    }

    private func requestEnd() {
        if discarding {
            discarding = false
            arm(.idle)
            return
        }
        guard var exchange, !exchange.complete else { return }
        deadline?.clear()
        exchange.complete = true
        self.exchange = exchange
        if exchange.sent {
            upstream?.writeAndFlush(NIOAny(HTTPClientRequestPart.end(nil)), promise: nil)
        } else if exchange.retryable {
            startSending()
        }
    }

    /// The client sent something that is not HTTP/1.1 (the decoder's error), or its connection failed.
    private func clientFailed(_ error: any Error) {
        guard !isClosed else { return }
        guard let parserError = error as? HTTPParserError else { return closed() }
        let refusal: VaultProxyError = switch parserError {
        case .headerOverflow:
            .headersTooLarge(credential: name, limit: VaultProxyConfiguration.headerLimits.maxHeaderListSize)
        case .unexpectedContentLength, .invalidContentLength, .invalidChunkSize:
            .badRequest(credential: name, "the request's Content-Length or Transfer-Encoding is invalid or conflicting")
        case .invalidMethod:
            .badRequest(credential: name, "the request's method is not one the proxy reads; for Vault's LIST send GET with "
                + "?list=true, as Vault's CLIs and API clients do")
        default:
            .badRequest(credential: name, "the request is not valid HTTP/1.1 (\(parserError))")
        }
        fail(refusal)
    }

    private func proxyStopping() {
        stopping = true
        exchange?.keepAlive = false
        if exchange == nil, !discarding { closed() }
    }

    func closed() {
        guard !isClosed else { return }
        isClosed = true
        deadline?.stop()
        exchange = nil
        dropUpstream()
        // The session lets go of the client's context, whose handler it is: both are freed with
        // the channel.
        let connection = client
        client = nil
        connection?.close(promise: nil)
    }

    /// Answers `head` with the proxy's own error; the connection stays open when no body follows
    /// (and `close` is not asked for).
    private func answer(_ error: VaultProxyError, to head: HTTPRequestHead, close: Bool = false) {
        proxy.metrics.rejected(reason: error.metricReason)
        proxy.logger.debug("vault proxy refused a request", metadata: ["proxy": "\(name)", "status": "\(error.status.code)"])
        let bodyFollows = head.headers["content-length"].contains { $0 != "0" } || !head.headers["transfer-encoding"].isEmpty
        let closing = close || bodyFollows || !head.isKeepAlive || !head.version.keepsConnections || stopping
        discarding = !closing
        writeError(error, version: head.version, closing: closing)
    }

    /// Answers the current request with `error` when nothing of Vault's answer was sent yet, and
    /// closes the connection.
    private func fail(_ error: VaultProxyError) {
        proxy.metrics.rejected(reason: error.metricReason)
        let started = if case .relaying = exchange?.response { true } else { false }
        let version = exchange?.head.version ?? .http1_1
        exchange = nil
        dropUpstream()
        if started { return closed() }
        writeError(error, version: version, closing: true)
    }

    private func writeError(_ error: VaultProxyError, version: HTTPVersion, closing: Bool) {
        guard let client else { return }
        if closing { deadline?.clear() }
        let body = error.body(allocator: client.channel.allocator)
        let head = VaultHeaders.errorResponse(error, version: version, bodyLength: body.readableBytes, closing: closing)
        client.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        client.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil)
        let written = client.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if closing { written.assumeIsolated().whenComplete { _ in self.closed() } }
    }

    // MARK: Timers

    private func arm(_ purpose: TimerPurpose) {
        let configuration = proxy.configuration
        let delay = purpose == .idle ? configuration.idleTimeout : configuration.common.handshakeTimeout
        waitingFor = purpose
        deadline?.move(after: TimeAmount(delay))
    }

    private func timedOut() {
        guard !isClosed else { return }
        switch waitingFor {
        case .idle:
            if exchange == nil { closed() }
        case .request:
            let seconds = proxy.configuration.common.handshakeTimeout.components.seconds
            if exchange == nil {
                proxy.metrics.rejected(reason: "handshake_timeout")
                closed()
            } else {
                fail(.requestTimeout(credential: name, seconds: seconds))
            }
        }
    }

    // MARK: Upstream

    /// Sends the current request on the open upstream connection, or connects first.
    private func startSending() {
        if upstream != nil { return sendRequest() }
        guard !connecting, let client else { return }
        connecting = true
        let started = ContinuousClock.now
        let handler = VaultUpstreamHandler(session: self)
        proxy.connectUpstream(on: client.eventLoop, handler).assumeIsolated().whenComplete { [self] result in
            connecting = false
            switch result {
            case let .success(channel):
                proxy.metrics.upstreamConnected(after: .now - started)
                guard !isClosed, exchange != nil, let context = handler.context else {
                    channel.close(promise: nil)
                    return
                }
                upstream = context
                upstreamReused = false
                upstreamKeepAlive = true
                sendRequest()
            case let .failure(error):
                if !isClosed { fail(.upstreamUnreachable(credential: name, address: address, "\(error)")) }
            }
        }
    }

    /// Writes the current request's head (with the token), the body parts that have arrived and,
    /// when it has come, the end. The request counts as sent before the first write: a head the
    /// upstream pipeline refuses fails the connection within that write, and ``upstreamFailed(_:_:)``
    /// answers the client then.
    private func sendRequest() {
        guard var exchange, !exchange.sent, let upstream else { return }
        let bodyLength = exchange.retryable ? exchange.bodyBytes : exchange.head.headers["content-length"].first.flatMap { Int($0) }
        let head = VaultHeaders.upstreamRequest(exchange.head, token: exchange.token, upstream: proxy.configuration.upstream,
                                                bodyLength: bodyLength)
        let body = exchange.body
        if !exchange.retryable { exchange.body = [] }
        exchange.sent = true
        exchange.response = .waiting
        self.exchange = exchange
        upstream.write(NIOAny(HTTPClientRequestPart.head(head)), promise: nil)
        guard self.upstream === upstream else { return }
        for part in body { upstream.write(NIOAny(HTTPClientRequestPart.body(.byteBuffer(part))), promise: nil) }
        if exchange.complete { upstream.write(NIOAny(HTTPClientRequestPart.end(nil)), promise: nil) }
        upstream.flush()
        if !exchange.complete { client?.channel.read() }
    }

    func responseHead(_ head: HTTPResponseHead, from context: ChannelHandlerContext) {
        guard context === upstream, var exchange, case .waiting = exchange.response else { return }
        if let problem = VaultHeaders.codingProblem(head) {
            proxy.logger.warning("vault proxy refused an answer it cannot mask", metadata: ["proxy": "\(name)", "error": "\(problem)"])
            return fail(.unmaskableAnswer(credential: name, address: address, problem))
        }
        upstreamKeepAlive = head.isKeepAlive
        exchange.status = head.status
        if head.status == .forbidden, exchange.retryable, exchange.complete, !exchange.retriedWithFreshToken {
            exchange.response = .held(head, context.channel.allocator.buffer(capacity: 0))
            self.exchange = exchange
        } else {
            self.exchange = exchange
            relayHead(head)
        }
    }

    func responseBody(_ bytes: ByteBuffer, from context: ChannelHandlerContext) {
        guard context === upstream, let exchange else { return }
        switch exchange.response {
        case .held(let head, var held):
            if held.readableBytes + bytes.readableBytes > VaultProxyConfiguration.heldRefusalLimit {
                relayHead(head)
                relayBody(held)
                relayBody(bytes)
            } else {
                var bytes = bytes
                held.writeBuffer(&bytes)
                self.exchange?.response = .held(head, held)
            }
        case .relaying:
            relayBody(bytes)
        case .waiting, .reloggingIn:
            break
        }
    }

    func responseReadComplete(from context: ChannelHandlerContext) {
        if context === upstream { client?.flush() }
    }

    func responseEnd(from context: ChannelHandlerContext) {
        guard context === upstream, let exchange else { return }
        if upstreamKeepAlive {
            upstreamReused = true
        } else {
            dropUpstream()
        }
        switch exchange.response {
        case let .held(head, body): logInAgain(thenRelay: head, body)
        case .relaying: finishResponse()
        case .waiting, .reloggingIn: break
        }
    }

    func upstreamFailed(_ context: ChannelHandlerContext, _ reason: String) {
        guard context === upstream else { return }
        let reused = upstreamReused
        upstream = nil
        guard var exchange, exchange.sent else { return }
        switch exchange.response {
        case .waiting where reused && exchange.retryable && exchange.complete && !exchange.resentOnNewConnection
            && exchange.head.method.isSafe:
            // Vault closed the idle connection as the request went out: once more on a new one
            // (only a read: a write may have been done before the connection ended).
            exchange.resentOnNewConnection = true
            exchange.sent = false
            self.exchange = exchange
            startSending()
        case .waiting, .held:
            proxy.logger.warning("vault proxy lost its connection to Vault", metadata: ["proxy": "\(name)", "error": "\(reason)"])
            fail(reused ? .upstreamFailed(credential: name, address: address, reason)
                        : .upstreamUnreachable(credential: name, address: address, reason))
        case .relaying:
            proxy.logger.warning("vault proxy lost its connection to Vault mid-answer", metadata: ["proxy": "\(name)", "error": "\(reason)"])
            closed()
        case .reloggingIn:
            break
        }
    }

    /// Forgets the upstream connection, then closes it (its close may report back at once: by then
    /// it is no longer this session's).
    private func dropUpstream() {
        let connection = upstream
        upstream = nil
        connection?.close(promise: nil)
    }

    // MARK: Answers

    private func relayHead(_ head: HTTPResponseHead) {
        guard var exchange, let client else { return }
        // A body still coming after Vault answered cannot be left on the connection.
        if !exchange.complete { exchange.keepAlive = false }
        let response = VaultHeaders.clientResponse(head, version: exchange.head.version, closing: !exchange.keepAlive)
        exchange.response = .relaying(proxy.sentTokens.redactor(for: exchange.token))
        self.exchange = exchange
        client.write(NIOAny(HTTPServerResponsePart.head(response)), promise: nil)
    }

    private func relayBody(_ bytes: ByteBuffer) {
        guard case var .relaying(redactor) = exchange?.response else { return }
        let safe = redactor.redact(bytes)
        exchange?.response = .relaying(redactor)
        if safe.readableBytes > 0 { client?.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(safe))), promise: nil) }
    }

    /// Ends the relayed answer; the connection then waits for the next request, or closes.
    private func finishResponse() {
        guard let exchange, case var .relaying(redactor) = exchange.response, let client else { return }
        let rest = redactor.finish()
        if rest.readableBytes > 0 { client.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(rest))), promise: nil) }
        if exchange.retriedWithFreshToken, exchange.status == .forbidden { proxy.metrics.reauthFailed() }
        let closing = !exchange.keepAlive || stopping
        self.exchange = nil
        if closing {
            dropUpstream()
            deadline?.clear()
        } else {
            arm(.idle)
        }
        // Written last: the next pipelined request may be handed over within this write.
        let written = client.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if closing { written.assumeIsolated().whenComplete { _ in self.closed() } }
    }

    /// Asks the agent for a token in place of the refused one: with a new one the request goes
    /// again, otherwise Vault's 403 is relayed.
    private func logInAgain(thenRelay head: HTTPResponseHead, _ body: ByteBuffer) {
        guard var exchange, let client else { return }
        exchange.response = .reloggingIn
        self.exchange = exchange
        let refused = exchange.token
        let serial = exchange.serial
        let relogin = proxy.relogin
        let fresh = client.eventLoop.makePromise(of: Secret?.self)
        fresh.completeWithTask { await relogin(refused) }
        fresh.futureResult.assumeIsolated().whenSuccess { [self] token in
            guard !isClosed, var current = self.exchange, current.serial == serial else { return }
            if let token, token != refused {
                proxy.metrics.reauthenticated()
                proxy.logger.info("vault proxy: Vault refused the token; sending the request again with a fresh one",
                                  metadata: ["proxy": "\(name)"])
                current.token = token
                current.retriedWithFreshToken = true
                current.sent = false
                current.response = .waiting
                self.exchange = current
                startSending()
            } else {
                if token == nil { proxy.metrics.reauthFailed() }
                relayHead(head)
                relayBody(body)
                finishResponse()
            }
        }
    }
}

extension HTTPVersion {
    /// HTTP/1.1 or later: connections stay open between requests (HTTP/1.0's are closed after
    /// each response, which is how it frames a body of unknown length).
    var keepsConnections: Bool { major > 1 || (major == 1 && minor >= 1) }
}
