import AuthProxy
import CloudAuth
import CredentialModel
import Foundation
import NIOCore
import NIOHTTP1

/// The first handler of a connection: it reads the socket API's requests. It tells the
/// connection's ``HTTPConnectionHandler`` that bytes arrived before anything else, which a decoder
/// does not: a request head sent a byte at a time is invisible until complete, and its deadline and
/// the idle timeout run from its bytes. Requests of the usual shape (``PlainRequestHead``) it reads
/// itself; at the first other one it puts NIO's HTTP/1.1 decoder behind itself and hands it that
/// request and every later byte of the connection, and NIO's decoder enforces the header limits
/// and reads the rest of HTTP/1.1. (Not NIO's decoder and a handler of its own for the arrival:
/// every handler a request passes and the general parser cost the hot path a third of its time.)
final class SocketRequestReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = SocketRequest
    private let connection: HTTPConnectionHandler
    private let limits: ServerLimits
    /// The start of a head of the usual shape that is not complete yet.
    private var partial: ByteBuffer?
    /// Set at the first request not of the usual shape; from then on NIO's decoder reads.
    private var general = false

    /// The longest head read here; a longer one goes to NIO's decoder.
    static let maxPlainHeadBytes = 1024

    init(limits: ServerLimits, reportingTo connection: HTTPConnectionHandler) {
        self.limits = limits
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.requestBytesArrived()
        if general { return context.fireChannelRead(data) }
        var bytes = unwrapInboundIn(data)
        if var partial {
            self.partial = nil
            partial.writeBuffer(&bytes)
            bytes = partial
        }
        let maxLength = min(Self.maxPlainHeadBytes, limits.maxHeaderBytes)
        while bytes.readableBytes > 0 {
            let outcome = bytes.withUnsafeReadableBytes {
                PlainRequestHead.parse($0, maxFields: limits.maxHeaderFields, maxLength: maxLength)
            }
            switch outcome {
            case let .request(head, length):
                bytes.moveReaderIndex(forwardBy: length)
                context.fireChannelRead(wrapInboundOut(.whole(head, bytes: length)))
            case .incomplete:
                partial = bytes
                return
            case .unusual:
                general = true
                let decoder = HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop,
                                                 limitConfiguration: limits.decoderLimits)
                do {
                    let pipeline = context.pipeline.syncOperations
                    try pipeline.addHandler(SocketRequestPartAdapter(), position: .after(self))
                    try pipeline.addHandler(ByteToMessageHandler(decoder), position: .after(self))
                } catch {
                    return context.fireErrorCaught(error)
                }
                return context.fireChannelRead(NIOAny(bytes))
            }
        }
    }
}

/// What a connection's ``HTTPConnectionHandler`` receives: a whole request of the usual shape
/// from ``SocketRequestReader``, in one event, or a part of any other from NIO's decoder.
enum SocketRequest {
    /// A request without a body whose head took `bytes` bytes.
    case whole(HTTPRequestHead, bytes: Int)
    case part(HTTPServerRequestPart)
}

/// Behind NIO's decoder, when a connection has one: passes its parts on as ``SocketRequest``s.
final class SocketRequestPartAdapter: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = SocketRequest

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(wrapInboundOut(.part(unwrapInboundIn(data))))
    }
}

/// One connection of the socket API: passes the channel's events to its
/// ``ConnectionStateMachine``, carries out what the machine decides, asks ``SocketAPI`` for the
/// answers, and for long polls and refreshes completes them later on the same event loop.
///
/// Responses are encoded here rather than by NIO's response encoder: a served credential is one
/// prebuilt buffer (status line, headers and body) written as it is.
final class HTTPConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = SocketRequest
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let shared: ServerContext
    private let api: SocketAPI
    private var state: ConnectionStateMachine
    private var access: PeerAccess
    private var requestDeadline: Scheduled<Void>?

    /// A long poll in progress: what it waits for, its registration in the store (renewed when
    /// the policy changes) and its timeout.
    private struct LongPoll {
        let name: String
        let version: Int
        let timeout: Scheduled<Void>
        var registration = 0
        /// Tells this registration's callback from that of an earlier one.
        var token = 0
        /// The timeout passed while the registration was being renewed.
        var expired = false
    }
    private var longPoll: LongPoll?
    private var waitTokens = 0
    /// An idle timeout after the last bytes that arrived; when it passes, the machine is told
    /// (kept here rather than in an `IdleStateHandler` for the same reason as
    /// ``SocketRequestReader``).
    private var idleDeadline: MovingDeadline?

    init(shared: ServerContext, peer: UnixPeerCredentials?) {
        self.shared = shared
        self.api = SocketAPI(shared: shared)
        self.state = ConnectionStateMachine(limits: shared.limits.connectionLimits)
        self.access = PeerAccess(peer: peer)
    }

    /// Adds one connection's handlers to its pipeline: the request reader reporting to a new
    /// handler for `peer`, and that handler.
    static func addHandlers(to pipeline: ChannelPipeline.SynchronousOperations, shared: ServerContext,
                            peer: UnixPeerCredentials?) throws {
        let connection = HTTPConnectionHandler(shared: shared, peer: peer)
        try pipeline.addHandler(SocketRequestReader(limits: shared.limits, reportingTo: connection))
        try pipeline.addHandler(connection)
    }

    // MARK: Channel events

    func channelActive(context: ChannelHandlerContext) {
        shared.metrics.connectionOpened()
        let idleTimeout = shared.limits.idleTimeout
        let idleDeadline = MovingDeadline(on: context.eventLoop) { [self] in
            run(state.readIdle(), context)
            // Told again an idle timeout later while the connection stays open.
            if context.channel.isActive { self.idleDeadline?.move(after: idleTimeout) }
        }
        idleDeadline.move(after: idleTimeout)
        self.idleDeadline = idleDeadline
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        shared.metrics.connectionClosed()
        state.closed()
        cancelRequestDeadline()
        idleDeadline?.stop()
        if let longPoll {
            longPoll.timeout.cancel()
            shared.store.cancelWait(longPoll.name, id: longPoll.registration)
            self.longPoll = nil
        }
        context.fireChannelInactive()
    }

    func requestBytesArrived() {
        let now = NIODeadline.now()
        idleDeadline?.move(to: now + shared.limits.idleTimeout)
        state.bytesArrived(at: now)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .whole(head, bytes):
            run(state.partReceived(.head(head), bytes: bytes, at: .now()), context)
            run(state.partReceived(.end(nil), bytes: 0, at: .now()), context)
        case let .part(part):
            run(state.partReceived(part, bytes: Self.size(of: part), at: .now()), context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        run(state.readComplete(), context)
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        run(state.readRequested(), context)
    }

    /// Falling behind is recorded at once; catching up resumes on the next turn of the event
    /// loop, outside the write that caused it.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.eventLoop.assumeIsolated().execute {
                self.run(self.state.writabilityChanged(context.channel.isWritable, at: .now()), context)
            }
        } else {
            run(state.writabilityChanged(false, at: .now()), context)
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            run(state.quiesce(), context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard context.channel.isActive else { return context.close(promise: nil) }
        let headerTooLarge = (error as? HTTPParserError) == .headerOverflow
        run(state.parserFailed(headerTooLarge: headerTooLarge), context)
    }

    /// About how many bytes `part` took on the wire, for the bound on waiting requests.
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

    // MARK: Carrying out the machine's actions

    private func run(_ first: ConnectionStateMachine.Action, _ context: ChannelHandlerContext) {
        var action = first
        while true {
            switch action {
            case .none:
                return
            case .read:
                return context.read()
            case .close:
                return context.close(promise: nil)
            case let .armRequestDeadline(deadline):
                return armRequestDeadline(deadline, context)
            case let .resume(read, deadline):
                if let deadline { armRequestDeadline(deadline, context) }
                if read { context.read() }
                return
            case let .answer(head):
                cancelRequestDeadline()
                action = answer(head, context)
            case let .refuse(refusal):
                cancelRequestDeadline()
                action = respond(api.refusal(refusal), context)
            case .interruptWait:
                action = interruptLongPoll(context)
            }
        }
    }

    private func armRequestDeadline(_ deadline: NIODeadline, _ context: ChannelHandlerContext) {
        requestDeadline = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.requestDeadline = nil
            self.run(self.state.requestDeadlinePassed(), context)
        }
    }

    private func cancelRequestDeadline() {
        requestDeadline?.cancel()
        requestDeadline = nil
    }

    /// Answers `head` now, or starts what answers it later (then the next action is none).
    private func answer(_ head: HTTPRequestHead, _ context: ChannelHandlerContext) -> ConnectionStateMachine.Action {
        switch api.answer(head, access: &access) {
        case let .respond(response):
            return respond(response, context)
        case let .longPoll(name, version, wait):
            let timeout = context.eventLoop.assumeIsolated().scheduleTask(in: wait) { self.longPollTimedOut(context) }
            longPoll = LongPoll(name: name, version: version, timeout: timeout)
            return waitForVersion(context)
        case let .refresh(refresher, minValid, force, route):
            let promise = context.eventLoop.makePromise(of: Result<CredentialSnapshot, RefreshFailure>.self)
            promise.completeWithTask { await refresher.credential(minValid: minValid, force: force) }
            let name = refresher.config.name.rawValue
            promise.futureResult.assumeIsolated().whenSuccess { result in
                self.run(self.respond(self.api.refreshed(result, name: name, force: force, route: route), context), context)
            }
            return .none
        }
    }

    /// Writes `response` framed as the machine says, counts it, and returns what comes next.
    private func respond(_ response: APIResponse, _ context: ChannelHandlerContext) -> ConnectionStateMachine.Action {
        guard let framing = state.startResponse() else { return .none }
        let bytes = wrapOutboundOut(response.encoded(framing, allocator: context.channel.allocator))
        if response.status == .ok, response.route == Route.credentialTemplate {
            shared.metrics.credentialServed()
        } else {
            shared.metrics.request(route: response.route, status: Int(response.status.code))
        }
        guard framing.keepAlive else {
            context.writeAndFlush(bytes).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            return .none
        }
        // No promise: nothing waits for a keep-alive response to be written.
        context.writeAndFlush(bytes, promise: nil)
        return state.responseWritten(at: .now())
    }

    // MARK: Long polls

    /// Registers the long poll with the store; answers at once when the version already differs.
    private func waitForVersion(_ context: ChannelHandlerContext) -> ConnectionStateMachine.Action {
        guard var poll = longPoll else { return .none }
        waitTokens += 1
        let token = waitTokens
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        let registration = shared.store.waitForVersion(poll.name, otherThan: poll.version) { outcome in
            bound.eventLoop.execute {
                let (handler, context) = bound.value
                handler.waitEnded(outcome, token: token, context)
            }
        }
        switch registration {
        case .unknown:
            return finishLongPoll(api.unknownCredential(poll.name, route: Route.credentialTemplate), context)
        case let .changed(snapshot):
            return finishLongPoll(api.serve(snapshot, route: Route.credentialTemplate), context)
        case let .waiting(id):
            poll.registration = id
            poll.token = token
            longPoll = poll
            // The policy changed between the peer's check and this registration: check again.
            if !access.verdictIsCurrent(shared), shared.store.cancelWait(poll.name, id: id) { return recheckLongPoll(context) }
            return .none
        }
    }

    private func waitEnded(_ outcome: CredentialStore.WaitOutcome, token: Int, _ context: ChannelHandlerContext) {
        guard let poll = longPoll, poll.token == token else { return }
        switch outcome {
        case let .rotated(snapshot):
            run(finishLongPoll(api.serve(snapshot, route: Route.credentialTemplate), context), context)
        case .removed:
            run(finishLongPoll(api.unknownCredential(poll.name, route: Route.credentialTemplate), context), context)
        case .recheck:
            run(recheckLongPoll(context), context)
        }
    }

    /// Who may read secrets changed: a peer no longer allowed gets 403, one still allowed waits on.
    private func recheckLongPoll(_ context: ChannelHandlerContext) -> ConnectionStateMachine.Action {
        guard access.mayReadSecrets(shared) else {
            return finishLongPoll(api.forbidden(access.peer, route: Route.credentialTemplate), context)
        }
        if longPoll?.expired == true { return finishLongPoll(api.notModified, context) }
        return waitForVersion(context)
    }

    private func finishLongPoll(_ response: APIResponse, _ context: ChannelHandlerContext) -> ConnectionStateMachine.Action {
        longPoll?.timeout.cancel()
        longPoll = nil
        return respond(response, context)
    }

    /// Answers 304, unless the wait already ended and its callback is on its way (then that
    /// answers, a renewal of the registration with 304).
    private func longPollTimedOut(_ context: ChannelHandlerContext) {
        guard let poll = longPoll else { return }
        guard shared.store.cancelWait(poll.name, id: poll.registration) else {
            longPoll?.expired = true
            return
        }
        longPoll = nil
        run(respond(api.notModified, context), context)
    }

    /// The agent stops: a long poll answers 304 now (a refresh in flight is awaited).
    private func interruptLongPoll(_ context: ChannelHandlerContext) -> ConnectionStateMachine.Action {
        guard let poll = longPoll, shared.store.cancelWait(poll.name, id: poll.registration) else { return .none }
        return finishLongPoll(api.notModified, context)
    }
}
