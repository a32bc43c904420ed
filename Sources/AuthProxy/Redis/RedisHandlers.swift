import NIOCore

/// The client's channel of a ``RedisSession``: hands reads to the session and reads only while
/// the session relays and the server's side can take more (so a slow server slows its client).
final class RedisClientHandler: SessionClientSide {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer

    let session: RedisSession

    init(session: RedisSession) {
        self.session = session
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        session.clientRead(context, &bytes)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        session.closed()
    }
}

/// The upstream channel of a ``RedisSession`` (behind the TLS handler when there is one); reads
/// only while the client's side can take more.
final class RedisServerHandler: SessionUpstreamSide {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer

    let session: RedisSession
    private var ready = false

    init(session: RedisSession) {
        self.session = session
    }

    func channelActive(context: ChannelHandlerContext) {
        if !session.proxy.usesTLS { becomeReady(context) }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted { becomeReady(context) }
        context.fireUserInboundEventTriggered(event)
    }

    private func becomeReady(_ context: ChannelHandlerContext) {
        guard !ready else { return }
        ready = true
        session.serverReady(context)
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        session.serverRead(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.serverFailed("the server closed the connection")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        session.serverFailed((error as? UpstreamTLSError)?.description ?? "\(error)")
        context.close(promise: nil)
    }
}
