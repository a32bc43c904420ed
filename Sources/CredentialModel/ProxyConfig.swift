import CloudAuth
import Foundation

/// A credential's `proxy:` block: a local listener whose clients need no password (see
/// docs/PROXY.md). Built only by the config parser, so a value of this type is valid.
public struct ProxyConfig: Sendable, Equatable {
    /// `listen`: a Unix socket directory (a PostgreSQL proxy's socket is `DIR/.s.PGSQL.5432`,
    /// which libpq finds for `host=DIR`), a Unix socket file (a Redis proxy's), or a loopback TCP
    /// address.
    public var listen: ProxyListenAddress
    /// Permission bits of the socket file (Unix sockets only).
    public var mode: UInt32 = 0o660
    /// Client connections open at once; more are refused (PostgreSQL: SQLSTATE 53300).
    public var maxConnections: Int = 256
    /// Peers allowed to connect; nil means `socket.allow`.
    public var allowUIDs: [UInt32]?
    public var allowGIDs: [UInt32]?
    /// Seconds from a client's connect until its session is established.
    public var handshakeTimeout: TimeInterval = 10
    /// Seconds without a byte either way after which an established session is closed; nil: never.
    public var idleTimeout: TimeInterval?
    /// Seconds open sessions are given to finish when the agent stops.
    public var shutdownGrace: TimeInterval = 30
    /// Redis: seconds after which an open connection authenticates again (`reauth_before`).
    public var reauthBefore: TimeInterval = 11 * 3600

    public init(listen: ProxyListenAddress) {
        self.listen = listen
    }
}
