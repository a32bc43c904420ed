import CloudAuth
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The Vault server a Vault proxy relays to, from the credential's `address`, `namespace`,
/// `ca_file` and `tls_server_name`.
public struct VaultUpstream: Sendable, Equatable {
    /// The address as configured, for messages.
    public var address: String
    /// Where to connect (the host an IPv6 address without brackets) and how to check the server:
    /// `.verifyFull` for https, `.disable` for http (which the config allows to loopback only).
    public var server: ProxyUpstream
    /// Sent as `X-Vault-Namespace` on every request.
    public var namespace: String?
    /// The `Host` header Vault receives: the address's host and port.
    public var hostHeader: String
    /// The address's path (a Vault behind a reverse proxy at `https://host/vault`), put before
    /// every request's path; empty for most.
    public var pathPrefix: String

    /// Reads `address` (`http(s)://host[:port]`); throws `CloudAuthError` naming it when it is not
    /// such a URL.
    public init(address: String, namespace: String? = nil, caFile: String? = nil, serverName: String? = nil) throws {
        let url = try EndpointURL(parsing: address)
        let https = url.scheme == "https"
        self.address = address
        server = ProxyUpstream(host: url.host.hasPrefix("[") ? String(url.host.dropFirst().dropLast()) : url.host,
                               port: url.port ?? (https ? 443 : 80), tls: https ? .verifyFull : .disable,
                               caFile: caFile, serverName: serverName)
        self.namespace = namespace
        hostHeader = url.port.map { "\(url.host):\($0)" } ?? url.host
        pathPrefix = url.path.hasSuffix("/") ? String(url.path.dropLast()) : url.path
    }
}

/// A Vault proxy's settings, valid by construction (the agent's config parser checks them).
public struct VaultProxyConfiguration: Sendable, Equatable {
    /// The Unix socket file (`unix:/DIR/NAME.sock`) or loopback TCP address clients connect to;
    /// the handshake timeout is how long a client may take to send its first request, and at most
    /// between two parts of a request's body (answered 408 and closed when over).
    public var common: ProxySettings
    /// A connection with no request in progress is closed after this long.
    public var idleTimeout: Duration
    /// Refuse requests without `X-Vault-Request: true` (412).
    public var requireRequestHeader: Bool
    /// Request path prefixes answered 403 by the proxy (see ``VaultHeaders/routedPath(_:)``).
    public var denyPaths: [String]
    /// Request bodies up to this size are held until complete, so that a request Vault refuses
    /// with 403 can be sent again after a fresh login; larger bodies are streamed and not retried.
    public var retryableBodyLimit: Int
    public var upstream: VaultUpstream

    public init(_ common: ProxySettings, idleTimeout: Duration = .seconds(300), requireRequestHeader: Bool = true,
                denyPaths: [String] = [], retryableBodyLimit: Int = 1 << 20, upstream: VaultUpstream) {
        self.common = common
        self.idleTimeout = idleTimeout
        self.requireRequestHeader = requireRequestHeader
        self.denyPaths = denyPaths
        self.retryableBodyLimit = retryableBodyLimit
        self.upstream = upstream
    }

    /// The request decoder's limits: NIO's defaults (80 KB of header fields).
    static let headerLimits = NIOHTTPDecoderLimitConfiguration()
    /// A 403 answer held while the proxy logs in again is at most this big; a bigger one is
    /// relayed as it is.
    static let heldRefusalLimit = 64 * 1024
}

extension VaultProxyConfiguration: ProxyListenerSettings {
    static let socketName = "vault.sock"
    var upstreamServer: ProxyUpstream { upstream.server }
}

/// A local Vault listener whose clients need no token: an HTTP/1.1 reverse proxy to the
/// credential's Vault that sets `X-Vault-Token` to the agent's current token on every request
/// (any token the client sent is removed), logs in again and retries once when Vault answers 403,
/// and masks the token (and those it used before) wherever Vault echoes one. See ``VaultSession``.
public final class VaultProxy: ListeningProxy {
    public let configuration: VaultProxyConfiguration
    /// The current token; each one given is noted in ``sentTokens``.
    let token: @Sendable () -> Secret?
    /// A fresh token for a refused one; noted in ``sentTokens`` too.
    let relogin: @Sendable (Secret) async -> Secret?
    /// The tokens the proxy has sent to Vault, which its answers mask.
    let sentTokens = SentTokens()
    let listener: ProxyListener

    /// - Parameters:
    ///   - token: the credential's current token, or nil when it has none valid.
    ///   - relogin: asks the agent for a token in place of the one given, which Vault refused;
    ///     nil when none could be had. The agent may answer the same token (it does not log in
    ///     again within `refresh.client_min_interval` of the last login); the request is then not
    ///     retried.
    ///   - allows: whether a connecting process may use the proxy.
    public init(configuration: VaultProxyConfiguration, token: @escaping @Sendable () -> Secret?,
                relogin: @escaping @Sendable (Secret) async -> Secret?,
                allows: @escaping @Sendable (UnixPeerCredentials) -> Bool, metrics: ProxyMetrics, logger: Logger,
                group: any EventLoopGroup) {
        self.configuration = configuration
        let sent = sentTokens
        self.token = { token().map(sent.record) }
        self.relogin = { refused in await relogin(refused).map(sent.record) }
        listener = ProxyListener(settings: configuration, allows: allows, metrics: metrics, logger: logger, group: group)
    }

    /// Counts the client's bytes, decodes HTTP/1.1 and hands requests to a new ``VaultSession``;
    /// when the proxy stops, the session closes once no request is in progress.
    func installSession(on channel: any Channel, refusal: ProxyRefusal?) throws {
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(ByteCountingHandler(metrics: metrics))
        try pipeline.configureHTTPServerPipeline(withErrorHandling: false, withEncoderConfiguration: .init(),
                                                 withDecoderLimitConfiguration: VaultProxyConfiguration.headerLimits)
        try pipeline.addHandler(VaultSession(proxy: self, refusal: refusal))
    }

    /// Connects to Vault on `eventLoop` (TLS when the address is https) with `handler` at the end
    /// of an HTTP/1.1 client pipeline.
    func connectUpstream(on eventLoop: any EventLoop, _ handler: VaultUpstreamHandler) -> EventLoopFuture<any Channel> {
        let bound = NIOLoopBound(handler, eventLoop: eventLoop)
        return configuration.upstream.server.connect(on: eventLoop, timeout: configuration.common.connectTimeout,
                                                     tls: listener.upstreamTLS) { pipeline in
            try pipeline.addHTTPClientHandlers()
            try pipeline.addHandler(bound.value)
        }
    }
}
