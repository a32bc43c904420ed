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

    /// Where a client connects to the proxy: for a Unix listener the path as written (a PostgreSQL
    /// proxy's directory, which libpq takes as `host=DIR`) and no port; for TCP the loopback host
    /// (without brackets) and its port.
    public var clientEndpoint: (hostOrPath: String, port: Int?) {
        switch self {
        case let .unixDirectory(path), let .unixSocket(path): (path, nil)
        case let .loopbackTCP(host, port): (host, port)
        }
    }

    /// Reads `listen` as ``description`` writes it: `unix:/PATH` (a directory when
    /// `socketIsDirectory`, else the socket file; an absolute path other than `/`, a trailing
    /// slash dropped), `HOST:PORT` or `[HOST]:PORT`. Nil when it is neither; whether the host is a
    /// loopback address is the config check's concern.
    public init?(listen: String, socketIsDirectory: Bool) {
        if listen.hasPrefix("unix:") {
            let written = String(listen.dropFirst("unix:".count))
            guard written.hasPrefix("/"), written.count > 1 else { return nil }
            let path = written.hasSuffix("/") ? String(written.dropLast()) : written
            self = socketIsDirectory ? .unixDirectory(path) : .unixSocket(path)
            return
        }
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        let written = String(listen[..<colon])
        let host = written.hasPrefix("[") && written.hasSuffix("]") ? String(written.dropFirst().dropLast()) : written
        guard !host.isEmpty else { return nil }
        self = .loopbackTCP(host: host, port: port)
    }
}
