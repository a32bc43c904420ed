import Foundation

/// A credential's `proxy:` block: a local listener whose clients need no password (see
/// docs/PROXY.md). Built only by the config parser, so a value of this type is valid.
public struct ProxyConfig: Sendable, Equatable {
    /// The directory the Unix socket is made in (`listen: unix:/DIR`); a PostgreSQL proxy's
    /// socket is `DIR/.s.PGSQL.5432`, which libpq finds for `host=DIR`.
    public var directory: String
    /// A Redis proxy's socket file (`listen: unix:/DIR/NAME.sock`; `directory` is then `DIR`).
    public var socketFile: String?
    /// Permission bits of the socket file.
    public var mode: UInt32 = 0o660
    /// Client connections open at once; more are refused (PostgreSQL: SQLSTATE 53300).
    public var maxConnections: Int = 256
    /// Peers allowed to connect; nil means `socket.allow`.
    public var allowUIDs: [UInt32]?
    public var allowGIDs: [UInt32]?
    /// Seconds from a client's connect until its session is established.
    public var handshakeTimeout: TimeInterval = 10
    /// Seconds open sessions are given to finish when the agent stops.
    public var shutdownGrace: TimeInterval = 30
    /// Redis: seconds after which an open connection authenticates again (`reauth_before`).
    public var reauthBefore: TimeInterval = 11 * 3600

    public init(directory: String) {
        self.directory = directory
    }

    /// The socket file of a PostgreSQL proxy.
    public var postgresSocketPath: String { directory + "/.s.PGSQL.5432" }
}
