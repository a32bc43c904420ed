import CloudAuth
import CredentialModel
import Foundation
import Yams

extension ConfigReader {
    /// The `proxy:` block of a credential at `path`, or nil (with issues) when unusable. A
    /// postgres proxy's `unix:` names a directory, a redis or vault proxy's a socket file.
    mutating func proxy(_ node: Node, _ path: String, kind: CredentialKind) -> ProxyConfig? {
        let kindKeys = switch kind {
        case .postgres: ["idle_timeout"]
        case .redis: ["reauth_before"]
        case .vault: ["idle_timeout", "require_request_header", "deny_paths"]
        }
        guard let map = mapping(node, path, allowed: ["listen", "mode", "max_connections", "allow", "handshake_timeout",
                                                      "shutdown_grace"] + kindKeys) else { return nil }
        guard let listen = requiredString(map, "listen", path) else { return nil }
        guard let address = proxyListenAddress(listen, "\(path).listen", kind: kind) else { return nil }
        var config = ProxyConfig(listen: address)
        if let socket = address.socketPath(inDirectoryNamed: ".s.PGSQL.5432"), socket.utf8.count > 107 {
            issue("\(path).listen", "makes the socket \(socket), \(socket.utf8.count) bytes long; a Unix socket path may have at most 107")
        }
        if let text = map["mode"].flatMap({ string($0, "\(path).mode") }) {
            if text.count >= 3, text.count <= 4, let mode = UInt32(text, radix: 8), mode <= 0o777 {
                config.mode = mode
            } else {
                issue("\(path).mode", "'\(text)' is not an octal permission mode like \"0660\"")
            }
        }
        if let text = map["max_connections"].flatMap({ string($0, "\(path).max_connections") }) {
            if let value = Int(text), (1...65536).contains(value) { config.maxConnections = value }
            else { issue("\(path).max_connections", "\(text) is not a number of connections (1-65536)") }
        }
        if let allowNode = map["allow"], let allow = mapping(allowNode, "\(path).allow", allowed: ["uids", "gids"]) {
            config.allowUIDs = allow["uids"].map { ids($0, "\(path).allow.uids") } ?? []
            config.allowGIDs = allow["gids"].map { ids($0, "\(path).allow.gids") } ?? []
        }
        if let value = map["handshake_timeout"].flatMap({ seconds($0, "\(path).handshake_timeout", 1...300) }) {
            config.handshakeTimeout = value
        }
        if let value = map["idle_timeout"].flatMap({ seconds($0, "\(path).idle_timeout", 1...86400) }) {
            config.idleTimeout = value
        }
        if let value = map["shutdown_grace"].flatMap({ seconds($0, "\(path).shutdown_grace", 0...3600) }) {
            config.shutdownGrace = value
        }
        if let value = map["reauth_before"].flatMap({ seconds($0, "\(path).reauth_before", 1...86400) }) {
            config.reauthBefore = value
        }
        if let value = map["require_request_header"].flatMap({ bool($0, "\(path).require_request_header") }) {
            config.requireRequestHeader = value
        }
        if let node = map["deny_paths"] { config.denyPaths = denyPaths(node, "\(path).deny_paths") }
        return config
    }

    /// `deny_paths`: a list of request path prefixes, each starting with `/` (like `/v1/sys/`).
    private mutating func denyPaths(_ node: Node, _ path: String) -> [String] {
        guard case let .sequence(sequence) = node else {
            issue(path, "must be a list of path prefixes, e.g. [/v1/sys/]")
            return []
        }
        return sequence.enumerated().compactMap { index, item in
            let itemPath = "\(path)[\(index)]"
            guard let item = expanded(item, itemPath), let text = string(item, itemPath) else { return nil }
            guard text.hasPrefix("/"), !text.contains("?"), !text.contains("%") else {
                issue(itemPath, "'\(text)' is not a request path prefix: write it as Vault's API path, like /v1/sys/ (no query, no percent-encoding)")
                return nil
            }
            return text
        }
    }

    /// `unix:/PATH` (a directory for postgres, a socket file for redis and vault), `127.0.0.1:PORT` (any
    /// 127.0.0.0/8 address) or `[::1]:PORT`; any other address is refused: a proxy never listens
    /// beyond this machine.
    private mutating func proxyListenAddress(_ listen: String, _ path: String, kind: CredentialKind) -> ProxyListenAddress? {
        guard let address = ProxyListenAddress(listen: listen, socketIsDirectory: kind == .postgres) else {
            issue(path, listen.hasPrefix("unix:")
                ? "'\(listen)' does not name an absolute directory or socket path: use unix:/run/credagent/NAME"
                : "'\(listen)' is neither unix:/DIR nor a loopback address with a port, like 127.0.0.1:6432 or [::1]:6432")
            return nil
        }
        guard case let .loopbackTCP(host, _) = address else { return address }
        let isIPv4Loopback = HostAddress.ipVersion(host) == 4 && host.hasPrefix("127.")
        let isIPv6Loopback = listen.hasPrefix("[") && HostAddress.ipVersion(host) == 6 && HostAddress.isLoopback(host)
        guard isIPv4Loopback || isIPv6Loopback else {
            issue(path, "'\(listen)' is not a loopback address: a proxy listens on a Unix socket (unix:/DIR), 127.0.0.1:PORT or [::1]:PORT only")
            return nil
        }
        return address
    }

    /// A duration within `range` (in seconds), or nil (with an issue naming the bounds).
    private mutating func seconds(_ node: Node, _ path: String, _ range: ClosedRange<Int64>) -> Duration? {
        guard let value = duration(node, path) else { return nil }
        guard value >= .seconds(range.lowerBound), value <= .seconds(range.upperBound) else {
            issue(path, "must be between \(range.lowerBound) s and \(range.upperBound) s")
            return nil
        }
        return value
    }
}
