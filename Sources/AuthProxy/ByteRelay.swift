import NIOCore

/// One half of a byte relay between two channels: what this side reads is written to the partner,
/// and this side stops reading while the partner cannot take more (its outbound buffer is above
/// the high watermark; see ``RelaySide``). So a connection holds at most a watermark's worth of
/// unsent bytes each way plus one read.
///
/// Both halves run on the same event loop (the upstream channel is made on the client's), so
/// they call each other directly.
final class RelayHandler: RelaySide, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partnerHandler: RelayHandler?
    private var context: ChannelHandlerContext?
    private let countBytes: (Int) -> Void

    /// `countBytes` is told how many bytes this side read (for the bytes-each-way metric).
    private init(countBytes: @escaping (Int) -> Void) {
        self.countBytes = countBytes
    }

    /// Two handlers joined to each other, the first for the client's channel, the second for the
    /// server's.
    static func pair(clientToServer: @escaping (Int) -> Void, serverToClient: @escaping (Int) -> Void) -> (RelayHandler, RelayHandler) {
        let client = RelayHandler(countBytes: clientToServer)
        let server = RelayHandler(countBytes: serverToClient)
        client.partnerHandler = server
        server.partnerHandler = client
        return (client, server)
    }

    var partner: ChannelHandlerContext? { partnerHandler?.context }
    var mayRead: Bool { partner?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partnerHandler = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        countBytes(bytes.readableBytes)
        partner?.write(wrapOutboundOut(bytes), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.flush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The other side gets what was already written, then is closed.
        if let partner {
            partner.flush()
            partner.close(promise: nil)
        }
        context.fireChannelInactive()
    }

    /// An `IdleStateHandler` ahead of this side reports the session idle: it is closed (and the
    /// partner with it).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
