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
/// closed (both halves move the session's deadline at their reads). It is kept here rather than in
/// an `IdleStateHandler`, which would add a handler and a promise to every write.
final class RelayHandler: RelaySide, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partnerHandler: RelayHandler?
    private var context: ChannelHandlerContext?
    private let countBytes: (Int) -> Void
    private let idleTimeout: TimeAmount?
    private let isClientSide: Bool
    /// The client's half holds the session's idle deadline, which both halves move.
    private var idleDeadline: MovingDeadline?

    /// `countBytes` is told how many bytes this side read (for the bytes-each-way metric).
    private init(countBytes: @escaping (Int) -> Void, idleTimeout: TimeAmount?, isClientSide: Bool) {
        self.countBytes = countBytes
        self.idleTimeout = idleTimeout
        self.isClientSide = isClientSide
    }

    /// Two handlers joined to each other, the first for the client's channel, the second for the
    /// server's; with `idleTimeout`, the session closes when no byte passed for that long.
    static func pair(clientToServer: @escaping (Int) -> Void, serverToClient: @escaping (Int) -> Void,
                     idleTimeout: TimeAmount? = nil) -> (RelayHandler, RelayHandler) {
        let client = RelayHandler(countBytes: clientToServer, idleTimeout: idleTimeout, isClientSide: true)
        let server = RelayHandler(countBytes: serverToClient, idleTimeout: idleTimeout, isClientSide: false)
        client.partnerHandler = server
        server.partnerHandler = client
        return (client, server)
    }

    var partner: ChannelHandlerContext? { partnerHandler?.context }
    var mayRead: Bool { partner?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if isClientSide, let idleTimeout {
            let deadline = MovingDeadline(on: context.eventLoop) { [weak channel = context.channel] in channel?.close(promise: nil) }
            deadline.move(after: idleTimeout)
            idleDeadline = deadline
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partnerHandler = nil
        idleDeadline?.stop()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        countBytes(bytes.readableBytes)
        if let idleTimeout { (isClientSide ? self : partnerHandler)?.idleDeadline?.move(after: idleTimeout) }
        partner?.write(wrapOutboundOut(bytes), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.flush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleDeadline?.stop()
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
