import CloudAuth
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The secret a proxy authenticates upstream with: the credential's user and current token.
public struct ProxyCredential: Sendable {
    public var username: String
    public var password: Secret

    public init(username: String, password: Secret) {
        self.username = username
        self.password = password
    }
}

/// A PostgreSQL proxy's settings, valid by construction (the agent's config parser checks them).
public struct PostgresProxyConfiguration: Sendable, Equatable {
    /// A Unix socket directory (the socket is `DIR/.s.PGSQL.5432`, as libpq expects for
    /// `host=DIR`) or a loopback TCP address; more connections than allowed are refused with
    /// SQLSTATE 53300; the handshake spans a client's connect to its session being established
    /// (startup, upstream connect, TLS, authentication).
    public var common: ProxySettings
    /// An established session with no bytes either way for this long is closed; nil: never.
    public var idleTimeout: Duration?
    public var upstream: ProxyUpstream

    public init(_ common: ProxySettings, idleTimeout: Duration? = nil, upstream: ProxyUpstream) {
        self.common = common
        self.idleTimeout = idleTimeout
        self.upstream = upstream
    }

    /// The socket file libpq connects to for `host=DIR` (port 5432); nil for a TCP listener.
    public var socketPath: String? {
        common.listener.socketPath(inDirectoryNamed: Self.socketName)
    }
}

extension PostgresProxyConfiguration: ProxyListenerSettings {
    static let socketName = ".s.PGSQL.5432"
    var upstreamServer: ProxyUpstream { upstream }
}

/// A local PostgreSQL listener whose clients need no password: each client connection is relayed
/// to the real server over a connection the proxy opened and authenticated with the credential's
/// current token (looked up for every new connection, so a rotation applies to new sessions while
/// open ones carry on).
///
/// ``start()`` binds the Unix socket or loopback TCP port; ``stop(grace:)`` closes the listener first, then gives open
/// sessions up to `grace` before closing them.
public final class PostgresProxy: ListeningProxy {
    public let configuration: PostgresProxyConfiguration
    let credential: @Sendable () -> ProxyCredential?
    let listener: ProxyListener
    /// The cancel keys of the sessions open through this proxy: only these are forwarded.
    private let cancelKeys = NIOLockedValueBox(Set<CancelKey>())

    /// - Parameters:
    ///   - credential: the current user and token, or nil when the credential has none valid.
    ///   - allows: whether a connecting process may use the proxy.
    public init(configuration: PostgresProxyConfiguration, credential: @escaping @Sendable () -> ProxyCredential?,
                allows: @escaping @Sendable (UnixPeerCredentials) -> Bool, metrics: ProxyMetrics, logger: Logger,
                group: any EventLoopGroup) {
        self.configuration = configuration
        self.credential = credential
        listener = ProxyListener(settings: configuration, allows: allows, metrics: metrics, logger: logger, group: group)
    }

    func installSession(on channel: any Channel, refusal: ProxyRefusal?) throws {
        try channel.pipeline.syncOperations.addHandler(PostgresSessionHandler(proxy: self, refusal: refusal))
    }

    func sessionOpened(cancelKey: CancelKey) {
        _ = cancelKeys.withLockedValue { $0.insert(cancelKey) }
    }

    func sessionClosed(cancelKey: CancelKey) {
        _ = cancelKeys.withLockedValue { $0.remove(cancelKey) }
    }

    func isOpenSession(_ key: CancelKey) -> Bool {
        cancelKeys.withLockedValue { $0.contains(key) }
    }

    // MARK: Upstream connections

    /// Connects to the server on `eventLoop` with `handler` as the upstream protocol handler (which
    /// negotiates TLS itself, after PostgreSQL's SSLRequest).
    func connectUpstream(on eventLoop: any EventLoop, _ handler: PostgresUpstreamHandler) -> EventLoopFuture<any Channel> {
        let bound = NIOLoopBound(handler, eventLoop: eventLoop)
        return configuration.upstream.connect(on: eventLoop, timeout: configuration.common.connectTimeout, tls: nil) {
            try $0.addHandler(bound.value)
        }
    }
}
