import NIOCore
import NIOHTTP1

/// Counts the bytes a proxy connection carries each way, at the very front of the client's
/// pipeline (what the client sent and received, framing included).
final class ByteCountingHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private let metrics: ProxyMetrics

    init(metrics: ProxyMetrics) {
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        metrics.relayed(clientToServer: unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        metrics.relayed(serverToClient: unwrapOutboundIn(data).readableBytes)
        context.write(data, promise: promise)
    }
}

/// The upstream channel of a ``VaultSession``: Vault's responses, behind the HTTP client pipeline
/// (and the TLS handler when the address is https). Reads a relayed answer only as fast as the
/// client takes it.
final class VaultUpstreamHandler: SessionUpstreamSide {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart

    let session: VaultSession
    /// This handler's place in the upstream pipeline: the session writes requests through it.
    private(set) var context: ChannelHandlerContext?

    init(session: VaultSession) {
        self.session = session
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head): session.responseHead(head, from: context)
        case let .body(bytes): session.responseBody(bytes, from: context)
        case .end: session.responseEnd(from: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        session.responseReadComplete(from: context)
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        session.upstreamFailed(context, "Vault closed the connection")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        session.upstreamFailed(context, (error as? UpstreamTLSError)?.description ?? "\(error)")
        context.close(promise: nil)
    }
}
