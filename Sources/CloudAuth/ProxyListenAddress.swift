/// Where a local proxy listens: a Unix socket in a directory, or a TCP port on a loopback address
/// (never beyond this machine: the config check refuses any other address).
public enum ProxyListenAddress: Sendable, Equatable {
    /// `unix:/DIR`: the socket is made in `DIR` (a PostgreSQL proxy's is `DIR/.s.PGSQL.5432`).
    case unixDirectory(String)
    /// `unix:/DIR/NAME.sock`: the socket file itself (a Redis proxy's).
    case unixSocket(String)
    /// `127.0.0.1:PORT` or `[::1]:PORT` (`host` without brackets).
    case loopbackTCP(host: String, port: Int)

    /// How the config writes it, for logs and messages.
    public var description: String {
        switch self {
        case let .unixDirectory(path), let .unixSocket(path): "unix:\(path)"
        case let .loopbackTCP(host, port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }

    /// The socket file of a Unix listener (`name` inside a directory, or the socket file itself);
    /// nil for TCP.
    public func socketPath(inDirectoryNamed name: String) -> String? {
        switch self {
        case let .unixDirectory(directory): directory + "/" + name
        case let .unixSocket(path): path
        case .loopbackTCP: nil
        }
    }
}
