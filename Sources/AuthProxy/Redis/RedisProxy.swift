import CloudAuth
import Foundation
import Logging
import NIOCore
import NIOPosix

/// A Redis proxy's settings, valid by construction (the agent's config parser checks them).
public struct RedisProxyConfiguration: Sendable, Equatable {
    /// The Unix socket file (`unix:/DIR/NAME.sock`) or loopback TCP address clients connect to;
    /// the handshake spans a client's first command to the upstream connection being ready
    /// (connect and TLS).
    public var common: ProxySettings
    /// An open connection is authenticated again once its last AUTH is this old.
    public var reauthBefore: Duration
    /// How long after a refused re-AUTH it is tried once more, before the connection is closed
    /// at a reply boundary: time for a token the cloud has just issued to reach the server.
    public var reauthRetryDelay: Duration
    public var upstream: ProxyUpstream

    public init(_ common: ProxySettings, reauthBefore: Duration = .seconds(11 * 3600), reauthRetryDelay: Duration = .seconds(1),
                upstream: ProxyUpstream) {
        self.common = common
        self.reauthBefore = reauthBefore
        self.reauthRetryDelay = reauthRetryDelay
        self.upstream = upstream
    }

    /// How long a due re-authentication may wait for a transaction or a blocking command to end
    /// before the connection is closed at a reply boundary instead: a quarter of `reauthBefore`,
    /// at most a minute.
    var reauthGrace: Duration { min(.seconds(60), reauthBefore / 4) }
}

extension RedisProxyConfiguration: ProxyListenerSettings {
    static let socketName = "redis.sock"
    var upstreamServer: ProxyUpstream { upstream }
}

/// A credential's secret with the instant it stops being valid, for re-authentication before it.
public struct ExpiringProxyCredential: Sendable {
    public var credential: ProxyCredential
    public var expiresAt: Date?

    public init(credential: ProxyCredential, expiresAt: Date?) {
        self.credential = credential
        self.expiresAt = expiresAt
    }
}

/// A local Redis listener whose clients need no password: each client connection is relayed to
/// the real server over a connection the proxy opened and authenticated (`AUTH user token`) with
/// the credential's current token. Long-lived connections are authenticated again with a fresh
/// token between replies (see ``RedisSession``).
public final class RedisProxy: ListeningProxy {
    public let configuration: RedisProxyConfiguration
    let credential: @Sendable () -> ExpiringProxyCredential?
    let listener: ProxyListener

    public init(configuration: RedisProxyConfiguration, credential: @escaping @Sendable () -> ExpiringProxyCredential?,
                allows: @escaping @Sendable (UnixPeerCredentials) -> Bool, metrics: ProxyMetrics, logger: Logger,
                group: any EventLoopGroup) {
        self.configuration = configuration
        self.credential = credential
        listener = ProxyListener(settings: configuration, allows: allows, metrics: metrics, logger: logger, group: group)
    }

    func installSession(on channel: any Channel, refusal: ProxyRefusal?) throws {
        try channel.pipeline.syncOperations.addHandler(RedisSession(proxy: self, refusal: refusal))
    }

    /// Connects to the server on `eventLoop`; TLS when configured. `handler` reports readiness.
    func connectUpstream(on eventLoop: any EventLoop, _ handler: RedisServerHandler) -> EventLoopFuture<any Channel> {
        let bound = NIOLoopBound(handler, eventLoop: eventLoop)
        return configuration.upstream.connect(on: eventLoop, timeout: configuration.common.connectTimeout, tls: listener.upstreamTLS) {
            try $0.addHandler(bound.value)
        }
    }

    var usesTLS: Bool { configuration.upstream.tls != .disable }
}
