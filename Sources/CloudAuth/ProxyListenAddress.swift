/// Where a local proxy listens: a Unix socket in a directory, or a TCP port on a loopback address
/// (never beyond this machine: the config check refuses any other address).
public enum ProxyListenAddress: Sendable, Equatable {
    /// `unix:/DIR`: the socket is made in `DIR` (a PostgreSQL proxy's is `DIR/.s.PGSQL.5432`).
    case unixDirectory(String)
    /// `127.0.0.1:PORT` or `[::1]:PORT` (`host` without brackets).
    case loopbackTCP(host: String, port: Int)

    /// How the config writes it, for logs and messages.
    public var description: String {
        switch self {
        case let .unixDirectory(directory): "unix:\(directory)"
        case let .loopbackTCP(host, port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}
