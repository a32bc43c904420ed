import CloudAuth
import Logging
import NIOCore
import NIOPosix

/// The client's end of a proxied PostgreSQL connection until its session is established: reads
/// the startup packets (reading only as much as it needs: the channel does not read on its own),
/// refuses with an ErrorResponse, forwards a CancelRequest, or opens the upstream connection and
/// then hands both channels to a ``RelayHandler`` pair.
final class PostgresSessionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase {
        case startup
        case connecting
        case relaying
        case closing
    }

    private let proxy: PostgresProxy
    /// Decided at accept; delivered once the client has sent its startup packet.
    private let refusal: ProxyRefusal?
    private var machine = ClientStartupStateMachine()
    private var phase = Phase.startup
    private var received = ByteBuffer()
    private var timeout: Scheduled<Void>?
    private var upstream: (any Channel)?
    private var connectStarted: ContinuousClock.Instant?

    init(proxy: PostgresProxy, refusal: ProxyRefusal?) {
        self.proxy = proxy
        self.refusal = refusal
    }

    private var credentialName: String { proxy.configuration.common.credential }

    func channelActive(context: ChannelHandlerContext) {
        let limit = proxy.configuration.common.handshakeTimeout
        let seconds = Int(limit.components.seconds)
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(limit)) { [weak self] in
            guard let self, self.phase == .startup || self.phase == .connecting else { return }
            self.refuse(context, .handshakeTimeout(credential: self.credentialName, seconds: max(seconds, 1)))
        }
        context.read()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        received.writeBuffer(&bytes)
        if phase == .startup { process(context) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if phase == .startup { context.read() }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        phase = .closing
        timeout?.cancel()
        upstream?.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: Startup

    private func process(_ context: ChannelHandlerContext) {
        while phase == .startup {
            switch machine.next(&received) {
            case .needMoreData:
                return
            case let .answer(byte):
                var answer = context.channel.allocator.buffer(capacity: 1)
                answer.writeInteger(byte)
                context.writeAndFlush(wrapOutboundOut(answer), promise: nil)
            case let .refuse(sqlState, message):
                refuse(context, .badStartup(credential: credentialName, sqlState: sqlState, message: message))
            case let .cancel(key):
                forwardCancel(context, key)
            case let .startup(message):
                start(context, message)
            }
        }
    }

    private func start(_ context: ChannelHandlerContext, _ message: StartupMessage) {
        if let refusal { return refuse(context, refusal) }
        guard let credential = proxy.credential() else { return refuse(context, .noCredential(credential: credentialName)) }
        let startup: StartupMessage
        switch ClientStartupStateMachine.upstreamStartup(message, credentialUser: credential.username, credentialName: credentialName) {
        case let .success(upstreamStartup): startup = upstreamStartup
        case let .failure(refusal): return refuse(context, refusal)
        }
        phase = .connecting
        connectStarted = .now
        let machine = UpstreamAuthStateMachine(user: credential.username, password: credential.password)
        let handler = makeUpstreamHandler(.session(startup, machine)) { [weak self] event in
            self?.upstreamEvent(context, event)
        }
        proxy.connectUpstream(on: context.eventLoop, handler).assumeIsolated().whenComplete { [weak self] result in
            guard let self else { return }
            switch result {
            case let .success(channel):
                if let started = self.connectStarted { self.proxy.metrics.upstreamConnected(after: .now - started) }
                guard self.phase == .connecting else {
                    channel.close(promise: nil)
                    return
                }
                self.upstream = channel
            case let .failure(error):
                self.upstreamEvent(context, .failed(.upstreamUnreachable(credential: self.credentialName,
                                                                         reason: Self.describe(error, self.proxy.configuration.upstream))))
            }
        }
    }

    private func makeUpstreamHandler(_ purpose: PostgresUpstreamHandler.Purpose,
                                     events: @escaping (PostgresUpstreamHandler.Event) -> Void) -> PostgresUpstreamHandler {
        let upstream = proxy.configuration.upstream
        return PostgresUpstreamHandler(purpose: purpose, tls: proxy.listener.upstreamTLS, serverName: upstream.certificateName,
                                       credentialName: credentialName, events: events)
    }

    private func upstreamEvent(_ context: ChannelHandlerContext, _ event: PostgresUpstreamHandler.Event) {
        guard phase == .connecting else { return }
        switch event {
        case let .forward(bytes):
            context.write(wrapOutboundOut(bytes), promise: nil)
        case let .ready(cancelKey, remaining):
            relay(context, cancelKey: cancelKey, remaining: remaining)
        case let .failed(refusal):
            refuse(context, refusal)
        case let .serverError(bytes):
            phase = .closing
            timeout?.cancel()
            proxy.logger.debug("proxy session refused by the server", metadata: ["proxy": "\(credentialName)"])
            context.writeAndFlush(wrapOutboundOut(bytes)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    /// Joins the two channels: bytes already received on either side go first, then the relay
    /// reads both.
    private func relay(_ context: ChannelHandlerContext, cancelKey: CancelKey?, remaining: ByteBuffer) {
        guard let upstream else {
            // The connect future has not completed yet (it completes before any read); never here.
            return refuse(context, .upstreamProtocol(credential: credentialName, reason: "the session was ready before it connected"))
        }
        phase = .relaying
        timeout?.cancel()
        let proxy = self.proxy
        if let cancelKey {
            proxy.sessionOpened(cancelKey: cancelKey)
            context.channel.closeFuture.whenComplete { _ in proxy.sessionClosed(cancelKey: cancelKey) }
        }
        let metrics = proxy.metrics
        let (clientSide, serverSide) = RelayHandler.pair(clientToServer: { metrics.relayed(clientToServer: $0) },
                                                         serverToClient: { metrics.relayed(serverToClient: $0) },
                                                         idleTimeout: proxy.configuration.idleTimeout.map { TimeAmount($0) })
        if remaining.readableBytes > 0 { context.write(wrapOutboundOut(remaining), promise: nil) }
        context.flush()
        if received.readableBytes > 0 { upstream.writeAndFlush(received, promise: nil) }
        received = ByteBuffer()
        do {
            let upstreamPipeline = upstream.pipeline.syncOperations
            upstreamPipeline.removeHandler(try upstreamPipeline.handler(type: PostgresUpstreamHandler.self), promise: nil)
            try upstreamPipeline.addHandler(serverSide)
            try context.pipeline.syncOperations.addHandler(clientSide)
        } catch {
            return refuse(context, .upstreamProtocol(credential: credentialName, reason: "the relay could not be set up: \(error)"))
        }
        // The client's channel read only on request until now; the relay's read() holds reads
        // while the other side cannot take more.
        context.channel.setOption(.autoRead, value: true).whenComplete { _ in }
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
        if !upstream.isActive { context.close(promise: nil) }
    }

    // MARK: Cancel

    /// Forwards a cancel for a session open through this proxy over a new upstream connection;
    /// others are dropped, as PostgreSQL drops wrong keys. The client hears nothing either way.
    private func forwardCancel(_ context: ChannelHandlerContext, _ key: CancelKey) {
        phase = .closing
        timeout?.cancel()
        guard refusal == nil, proxy.isOpenSession(key) else {
            proxy.logger.debug("cancel request for no session of this proxy dropped", metadata: ["proxy": "\(credentialName)"])
            context.close(promise: nil)
            return
        }
        let handler = makeUpstreamHandler(.cancel(key)) { [proxy, credentialName] event in
            if case let .failed(refusal) = event {
                proxy.logger.warning("cancel request not forwarded", metadata: ["proxy": "\(credentialName)", "error": "\(refusal.message)"])
            }
        }
        let limit = TimeAmount(proxy.configuration.common.handshakeTimeout)
        proxy.connectUpstream(on: context.eventLoop, handler).assumeIsolated().whenComplete { result in
            if case let .success(upstream) = result {
                // A server that never finishes the exchange holds the connection no longer than a handshake may take.
                let deadline = upstream.eventLoop.scheduleTask(in: limit) { upstream.close(promise: nil) }
                upstream.closeFuture.whenComplete { _ in deadline.cancel() }
            }
            context.close(promise: nil)
        }
    }

    // MARK: Refusals

    /// Answers an ErrorResponse naming the credential, then closes; counted by reason.
    private func refuse(_ context: ChannelHandlerContext, _ refusal: ProxyRefusal) {
        guard phase != .closing, phase != .relaying else { return }
        phase = .closing
        timeout?.cancel()
        upstream?.close(promise: nil)
        proxy.metrics.rejected(refusal)
        let level: Logger.Level = switch refusal {
        case .tokenRejected, .upstreamUnreachable, .upstreamProtocol, .noCredential: .warning
        default: .debug
        }
        proxy.logger.log(level: level, "proxy connection refused", metadata: [
            "proxy": "\(credentialName)", "reason": "\(refusal.metricReason)", "sqlstate": "\(refusal.sqlState)",
            "error": "\(refusal.message)",
        ])
        let response = PostgresWire.errorResponse(sqlState: refusal.sqlState, message: refusal.message)
        context.writeAndFlush(wrapOutboundOut(response)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private static func describe(_ error: any Error, _ upstream: ProxyUpstream) -> String {
        let target = "\(upstream.host):\(upstream.port)"
        switch error {
        case is ChannelError:
            if case ChannelError.connectTimeout = error { return "\(target) did not answer in time" }
            return "\(target): \(error)"
        case let error as NIOConnectionError:
            let causes = error.connectionErrors.map { "\($0.error)" }
            if let dns = error.dnsAAAAError ?? error.dnsAError, causes.isEmpty { return "\(upstream.host) cannot be resolved (\(dns))" }
            return "\(target) refused or unreachable (\(causes.first ?? "no address"))"
        default:
            return "\(target): \(error)"
        }
    }
}
