import NIOCore

/// One side of a proxied connection (the client's channel or the upstream one) that relays to the
/// other side, its partner, on the same event loop. It reads only while ``mayRead`` (at the least:
/// the partner's channel can take more), and when its own channel can take more again it asks the
/// partner to read what it held back. So a slow reader slows its writer, each way.
///
/// The Postgres relay and the Redis and Vault sessions' handlers share this: a handler names its
/// partner and when it may read; the two channel events below come from here.
protocol RelaySide: ChannelDuplexHandler {
    /// The partner channel's end of the relay; nil while it is not connected (or after it closed).
    var partner: ChannelHandlerContext? { get }
    /// Whether this side may read now.
    var mayRead: Bool { get }
}

extension RelaySide {
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.channel.read() }
        context.fireChannelWritabilityChanged()
    }

    /// Held while this side may not read; the partner's writability change asks again.
    func read(context: ChannelHandlerContext) {
        if mayRead { context.read() }
    }
}

/// A proxy session that is its client channel's handler (Redis's and Vault's): it starts and
/// ends with that channel, owns the upstream channel it opens, and says when each side may read.
protocol ClientSession: RelaySide {
    /// The client channel's end of the session, once active.
    var client: ChannelHandlerContext? { get }
    /// The upstream channel's end of the session, once connected.
    var upstream: ChannelHandlerContext? { get }
    var clientMayRead: Bool { get }
    var upstreamMayRead: Bool { get }
    /// The client's channel is active: the session starts.
    func clientActive(_ context: ChannelHandlerContext)
    /// The client's channel closed: the session ends (and closes the upstream channel).
    func closed()
}

extension ClientSession {
    var partner: ChannelHandlerContext? { upstream }
    var mayRead: Bool { clientMayRead }

    func channelActive(context: ChannelHandlerContext) {
        clientActive(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed()
        context.fireChannelInactive()
    }
}

/// The handler at the end of a session's upstream channel: it reads at the pace the session sets.
protocol SessionUpstreamSide: RelaySide {
    associatedtype Session: ClientSession
    var session: Session { get }
}

extension SessionUpstreamSide {
    var partner: ChannelHandlerContext? { session.client }
    var mayRead: Bool { session.upstreamMayRead }
}
