import CloudAuth
import NIOCore

/// The proxy's end of an upstream PostgreSQL connection until the session is established:
/// negotiates TLS (SSLRequest, then the OpenSSL handler), then either sends the StartupMessage and
/// runs ``UpstreamAuthStateMachine``, or sends a CancelRequest and closes. It reports to its
/// session through `events`, on the same event loop.
final class PostgresUpstreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// What the connection is for.
    enum Purpose {
        case session(StartupMessage, UpstreamAuthStateMachine)
        case cancel(CancelKey)
    }

    /// What the session hears from the upstream handshake.
    enum Event {
        /// Pass these bytes to the client.
        case forward(ByteBuffer)
        /// The session is established; `remaining` are bytes the server sent after ReadyForQuery.
        case ready(cancelKey: CancelKey?, remaining: ByteBuffer)
        case failed(ProxyRefusal)
        /// The server's own ErrorResponse (not about the token): forwarded as is, then closed.
        case serverError(ByteBuffer)
    }

    private enum State {
        case awaitingTLSAnswer
        case tlsHandshake
        case authenticating(UpstreamAuthStateMachine)
        case done
    }

    private let purpose: Purpose
    private let tls: UpstreamTLSContext?
    private let serverName: String
    private let credentialName: String
    private var state: State
    private var buffer = ByteBuffer()
    private let events: (Event) -> Void

    init(purpose: Purpose, tls: UpstreamTLSContext?, serverName: String, credentialName: String,
         events: @escaping (Event) -> Void) {
        self.purpose = purpose
        self.tls = tls
        self.serverName = serverName
        self.credentialName = credentialName
        self.events = events
        state = .done
    }

    func channelActive(context: ChannelHandlerContext) {
        if tls != nil {
            state = .awaitingTLSAnswer
            context.writeAndFlush(wrapOutboundOut(PostgresWire.sslRequest()), promise: nil)
        } else {
            begin(context)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        switch state {
        case .awaitingTLSAnswer:
            guard let answer = bytes.readInteger(as: UInt8.self), bytes.readableBytes == 0 else {
                return fail(context, .upstreamUnreachable(credential: credentialName, reason: "the server answered the SSLRequest with more than one byte"))
            }
            guard answer == UInt8(ascii: "S"), let tls else {
                return fail(context, .upstreamUnreachable(credential: credentialName,
                                                          reason: "the server does not offer TLS, and the credential's sslmode requires it"))
            }
            state = .tlsHandshake
            do {
                try context.pipeline.syncOperations.addHandler(OpenSSLClientHandler(context: tls, serverName: serverName),
                                                               position: .before(self))
            } catch {
                fail(context, .upstreamUnreachable(credential: credentialName, reason: "TLS could not be set up: \(error)"))
            }
        case .authenticating(var machine):
            buffer.writeBuffer(&bytes)
            authenticate(context, &machine)
        case .tlsHandshake, .done:
            break
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted, case .tlsHandshake = state {
            begin(context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason = (error as? UpstreamTLSError)?.description ?? "\(error)"
        fail(context, .upstreamUnreachable(credential: credentialName, reason: reason))
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .done = state {} else {
            fail(context, .upstreamUnreachable(credential: credentialName, reason: "the server closed the connection during the handshake"))
        }
        context.fireChannelInactive()
    }

    /// Sends the StartupMessage or the CancelRequest.
    private func begin(_ context: ChannelHandlerContext) {
        switch purpose {
        case let .session(startup, machine):
            state = .authenticating(machine)
            context.writeAndFlush(wrapOutboundOut(PostgresWire.startupMessage(startup)), promise: nil)
        case let .cancel(key):
            state = .done
            context.writeAndFlush(wrapOutboundOut(PostgresWire.cancelRequest(key))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }

    private func authenticate(_ context: ChannelHandlerContext, _ machine: inout UpstreamAuthStateMachine) {
        while true {
            let message: PostgresWire.BackendMessage?
            do {
                message = try PostgresWire.decodeBackendMessage(&buffer)
            } catch {
                return fail(context, .upstreamProtocol(credential: credentialName,
                                                       reason: "the server sent a message of \(error.length) bytes during the handshake"))
            }
            guard let message else {
                state = .authenticating(machine)
                return
            }
            switch machine.received(message) {
            case let .sendToServer(bytes):
                context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
            case let .forwardToClient(bytes):
                events(.forward(bytes))
            case let .ready(bytes, cancelKey):
                state = .done
                events(.forward(bytes))
                let remaining = buffer
                buffer = ByteBuffer()
                events(.ready(cancelKey: cancelKey, remaining: remaining))
                return
            case let .fail(failure):
                state = .done
                switch failure {
                case let .rejected(serverMessage):
                    events(.failed(.tokenRejected(credential: credentialName, serverMessage: serverMessage)))
                case let .serverError(error):
                    events(.serverError(error.raw))
                case let .protocolViolation(reason):
                    events(.failed(.upstreamProtocol(credential: credentialName, reason: reason)))
                }
                context.close(promise: nil)
                return
            case .none:
                continue
            }
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ refusal: ProxyRefusal) {
        if case .done = state { return }
        state = .done
        events(.failed(refusal))
        context.close(promise: nil)
    }
}
