import NIOCore

/// One half of a byte relay between two channels: what this side reads is written to the partner,
/// and this side stops reading while the partner cannot take more (its outbound buffer is above
/// the high watermark; see ``RelaySide``). So a connection holds at most a watermark's worth of
/// unsent bytes each way plus one read.
///
/// Both halves run on the same event loop (the upstream channel is made on the client's), so
/// they call each other directly.
///
/// With an idle timeout, a session through which no byte has passed either way for that long is
/// closed (both halves note the time of their reads; the client's half checks). It is kept here
/// rather than in an `IdleStateHandler`, which would add a handler and a promise to every write.
final class RelayHandler: RelaySide, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// When bytes last passed either way, shared by the two halves, and the timeout.
    private final class Idleness {
        let timeout: TimeAmount
        var lastBytesAt = NIODeadline.now()

        init(timeout: TimeAmount) {
            self.timeout = timeout
        }
    }

    private var partnerHandler: RelayHandler?
    private var context: ChannelHandlerContext?
    private let countBytes: (Int) -> Void
    private let idleness: Idleness?
    /// The client's half checks the session's idleness.
    private let checksIdleness: Bool
    private var idleCheck: Scheduled<Void>?

    /// `countBytes` is told how many bytes this side read (for the bytes-each-way metric).
    private init(countBytes: @escaping (Int) -> Void, idleness: Idleness?, checksIdleness: Bool) {
        self.countBytes = countBytes
        self.idleness = idleness
        self.checksIdleness = checksIdleness
    }

    /// Two handlers joined to each other, the first for the client's channel, the second for the
    /// server's; with `idleTimeout`, the session closes when no byte passed for that long.
    static func pair(clientToServer: @escaping (Int) -> Void, serverToClient: @escaping (Int) -> Void,
                     idleTimeout: TimeAmount? = nil) -> (RelayHandler, RelayHandler) {
        let idleness = idleTimeout.map(Idleness.init)
        let client = RelayHandler(countBytes: clientToServer, idleness: idleness, checksIdleness: true)
        let server = RelayHandler(countBytes: serverToClient, idleness: idleness, checksIdleness: false)
        client.partnerHandler = server
        server.partnerHandler = client
        return (client, server)
    }

    var partner: ChannelHandlerContext? { partnerHandler?.context }
    var mayRead: Bool { partner?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if checksIdleness, let idleness {
            idleness.lastBytesAt = .now()
            checkIdleness(after: idleness.timeout, context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partnerHandler = nil
        idleCheck?.cancel()
        idleCheck = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        countBytes(bytes.readableBytes)
        idleness?.lastBytesAt = .now()
        partner?.write(wrapOutboundOut(bytes), promise: nil)
    }

    /// Closes the session once no byte passed for the timeout; checks again a timeout after the
    /// last bytes until then.
    private func checkIdleness(after delay: TimeAmount, _ context: ChannelHandlerContext) {
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            self.idleCheck = nil
            guard let idleness = self.idleness, self.context != nil else { return }
            let quiet = NIODeadline.now() - idleness.lastBytesAt
            guard quiet < idleness.timeout else { return context.close(promise: nil) }
            self.checkIdleness(after: idleness.timeout - quiet, context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.flush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleCheck?.cancel()
        idleCheck = nil
        // The other side gets what was already written, then is closed.
        if let partner {
            partner.flush()
            partner.close(promise: nil)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
