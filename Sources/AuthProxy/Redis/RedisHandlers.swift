import NIOCore

/// The client's channel of a ``RedisSession``: hands reads to the session and reads only while
/// the server's side can take more (so a slow server slows its client, and vice versa).
final class RedisClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let session: RedisSession

    init(session: RedisSession) {
        self.session = session
    }

    func channelActive(context: ChannelHandlerContext) {
        session.clientActive(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        session.clientRead(context, &bytes)
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        session.closed()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { session.server?.channel.read() }
        context.fireChannelWritabilityChanged()
    }

    /// Held while the server's side cannot take more; its writability change asks again.
    func read(context: ChannelHandlerContext) {
        if session.clientMayRead { context.read() }
    }
}

/// The upstream channel of a ``RedisSession`` (behind the TLS handler when there is one).
final class RedisServerHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

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

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { session.client?.channel.read() }
        context.fireChannelWritabilityChanged()
    }

    /// Held while the client's side cannot take more; its writability change asks again.
    func read(context: ChannelHandlerContext) {
        if session.serverMayRead { context.read() }
    }
}
