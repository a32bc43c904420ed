import NIOCore

/// One half of a byte relay between two channels: what this side reads is written to the partner,
/// and this side stops reading while the partner cannot take more (its outbound buffer is above
/// the high watermark). So a slow reader slows its writer, and a connection holds at most a
/// watermark's worth of unsent bytes each way plus one read.
///
/// Both halves run on the same event loop (the upstream channel is made on the client's), so
/// they call each other directly.
final class RelayHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: RelayHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
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
        client.partner = server
        server.partner = client
        return (client, server)
    }

    private var partnerWritable: Bool { partner?.context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        countBytes(bytes.readableBytes)
        partner?.context?.write(wrapOutboundOut(bytes), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The other side gets what was already written, then is closed.
        if let partnerContext = partner?.context {
            partnerContext.flush()
            partnerContext.close(promise: nil)
        }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeReading() }
        context.fireChannelWritabilityChanged()
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

    func read(context: ChannelHandlerContext) {
        if partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }

    private func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }
}
