import CloudAuth
import CredentialModel
import Foundation
import Yams

extension ConfigReader {
    /// The `proxy:` block of a postgres credential at `path`, or nil (with issues) when unusable.
    mutating func proxy(_ node: Node, _ path: String) -> ProxyConfig? {
        guard let map = mapping(node, path, allowed: ["listen", "mode", "max_connections", "allow", "handshake_timeout",
                                                      "idle_timeout", "shutdown_grace"]) else { return nil }
        guard let listen = requiredString(map, "listen", path) else { return nil }
        guard let address = proxyListenAddress(listen, "\(path).listen") else { return nil }
        var config = ProxyConfig(listen: address)
        if case let .unixDirectory(directory) = address {
            let socket = directory + "/.s.PGSQL.5432"
            if socket.utf8.count > 107 {
                issue("\(path).listen", "makes the socket \(socket), \(socket.utf8.count) bytes long; a Unix socket path may have at most 107")
            }
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
        return config
    }

    /// `unix:/DIR`, `127.0.0.1:PORT` (any 127.0.0.0/8 address) or `[::1]:PORT`; any other address
    /// is refused: a proxy never listens beyond this machine.
    private mutating func proxyListenAddress(_ listen: String, _ path: String) -> ProxyListenAddress? {
        if listen.hasPrefix("unix:") {
            let directory = String(listen.dropFirst("unix:".count))
            guard directory.hasPrefix("/"), directory.count > 1 else {
                issue(path, "'\(listen)' does not name an absolute directory: use unix:/run/credagent/NAME")
                return nil
            }
            return .unixDirectory(directory.hasSuffix("/") ? String(directory.dropLast()) : directory)
        }
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
              (1...65535).contains(port) else {
            issue(path, "'\(listen)' is neither unix:/DIR nor a loopback address with a port, like 127.0.0.1:6432 or [::1]:6432")
            return nil
        }
        let written = String(listen[..<colon])
        let host = written.hasPrefix("[") && written.hasSuffix("]") ? String(written.dropFirst().dropLast()) : written
        var ipv4 = in_addr()
        var ipv6 = in6_addr()
        let isIPv4Loopback = inet_pton(AF_INET, host, &ipv4) == 1 && host.hasPrefix("127.")
        let isIPv6Loopback = written.hasPrefix("[") && inet_pton(AF_INET6, host, &ipv6) == 1 && HostAddress.isLoopback(host)
        guard isIPv4Loopback || isIPv6Loopback else {
            issue(path, "'\(listen)' is not a loopback address: a proxy listens on a Unix socket (unix:/DIR), 127.0.0.1:PORT or [::1]:PORT only")
            return nil
        }
        return .loopbackTCP(host: host, port: port)
    }

    private mutating func seconds(_ node: Node, _ path: String, _ range: ClosedRange<TimeInterval>) -> TimeInterval? {
        guard let value = duration(node, path) else { return nil }
        guard range.contains(value) else {
            issue(path, "must be between \(Int(range.lowerBound)) s and \(Int(range.upperBound)) s")
            return nil
        }
        return value
    }
}
