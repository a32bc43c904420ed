import NIOCore
import NIOPosix

/// Where a proxy connects to, and how it checks the server.
public struct ProxyUpstream: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// PostgreSQL: the credential's `sslmode`; Redis: `.disable` (plain, loopback only) or
    /// `.verifyFull`.
    public var tls: UpstreamTLSMode
    /// CA bundle for the server's certificate; the system store when nil.
    public var caFile: String?
    /// The name the certificate must carry (and SNI); the host when nil.
    public var serverName: String?

    public init(host: String, port: Int, tls: UpstreamTLSMode, caFile: String? = nil, serverName: String? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
        self.caFile = caFile
        self.serverName = serverName
    }

    /// The name the server's certificate is checked against.
    var certificateName: String { serverName ?? host }

    /// The TLS context for this server (its CA file loaded), nil when the connection is plain.
    /// Throws ``UpstreamTLSError`` naming the CA file.
    func tlsContext() throws -> UpstreamTLSContext? {
        tls == .disable ? nil : try UpstreamTLSContext(mode: tls, caFile: caFile)
    }

    /// Opens a TCP connection to the server on `eventLoop` (keep-alive, no delay) within
    /// `timeout`, with TLS first when `tls` is given; `install` adds the protocol's handlers
    /// after it, on `eventLoop`, where the channel is.
    func connect(on eventLoop: any EventLoop, timeout: Duration, tls: UpstreamTLSContext?,
                 install: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void) -> EventLoopFuture<any Channel> {
        let serverName = certificateName
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(timeout))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tls { try pipeline.addHandler(OpenSSLClientHandler(context: tls, serverName: serverName)) }
                    try install(pipeline)
                }
            }
            .connect(host: host, port: port)
    }
}
