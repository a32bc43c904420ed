import NIOCore

/// The client's channel of a ``RedisSession``: hands reads to the session and reads only while
/// the server's side can take more (so a slow server slows its client, and vice versa).
final class RedisClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let session: RedisSession
    private var pendingRead = false

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

    func read(context: ChannelHandlerContext) {
        if session.clientMayRead {
            pendingRead = false
            context.read()
        } else {
            pendingRead = true
        }
    }

    /// Reads again after the server's side drained (or the session began relaying).
    func resume(_ context: ChannelHandlerContext) {
        guard pendingRead else { return }
        pendingRead = false
        context.read()
    }
}

/// The upstream channel of a ``RedisSession`` (behind the TLS handler when there is one).
final class RedisServerHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let session: RedisSession
    private var ready = false
    private var pendingRead = false

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
        if context.channel.isWritable, let client = session.client {
            (try? client.pipeline.syncOperations.handler(type: RedisClientHandler.self))?.resume(client)
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if session.serverMayRead {
            pendingRead = false
            context.read()
        } else {
            pendingRead = true
        }
    }

    /// Reads again after the client's side drained.
    func resume(_ context: ChannelHandlerContext) {
        guard pendingRead else { return }
        pendingRead = false
        context.read()
    }
}
