import NIOCore

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
