import CloudAuth
import Foundation

/// A credential's `proxy:` block: a local listener whose clients need no password (see
/// docs/PROXY.md). Built only by the config parser, so a value of this type is valid.
public struct ProxyConfig: Sendable, Equatable {
    /// `listen`: a Unix socket directory (a PostgreSQL proxy's socket is `DIR/.s.PGSQL.5432`,
    /// which libpq finds for `host=DIR`), a Unix socket file (a Redis or Vault proxy's), or a
    /// loopback TCP address.
    public var listen: ProxyListenAddress
    /// Permission bits of the socket file (Unix sockets only).
    public var mode: UInt32 = 0o660
    /// Client connections open at once; more are refused (PostgreSQL: SQLSTATE 53300).
    public var maxConnections: Int = 256
    /// Peers allowed to connect; nil means `socket.allow`.
    public var allowUIDs: [UInt32]?
    public var allowGIDs: [UInt32]?
    /// How long from a client's connect until its session is established.
    public var handshakeTimeout: Duration = .seconds(10)
    /// How long without a byte either way before an established session is closed (Vault: a
    /// connection with no request in progress); nil: never (Vault: ``defaultVaultIdleTimeout``).
    public var idleTimeout: Duration?
    /// How long open sessions are given to finish when the agent stops.
    public var shutdownGrace: Duration = .seconds(30)
    /// Redis: how long after which an open connection authenticates again (`reauth_before`).
    public var reauthBefore: Duration = .seconds(11 * 3600)
    /// Vault: requests without `X-Vault-Request: true` are refused (412), as Vault Proxy's
    /// `require_request_header` does: a browser cannot send that header cross-site.
    public var requireRequestHeader = true
    /// Vault: request paths (`/v1/...`, compared after percent-decoding and removing `.`, `..` and
    /// doubled slashes) starting with one of these are refused (403) by the proxy itself.
    public var denyPaths: [String] = []

    /// How long a Vault proxy keeps a connection with no request in progress when `idle_timeout`
    /// is not set: Vault's own listener's default.
    public static let defaultVaultIdleTimeout: Duration = .seconds(300)

    public init(listen: ProxyListenAddress) {
        self.listen = listen
    }
}
