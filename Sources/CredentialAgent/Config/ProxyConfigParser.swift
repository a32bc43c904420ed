import CloudAuth
import CredentialModel
import Foundation
import Yams

extension ConfigReader {
    /// The `proxy:` block of a postgres or redis credential at `path`, or nil (with issues) when
    /// unusable. A postgres proxy listens in a directory, a redis proxy on a socket file.
    mutating func proxy(_ node: Node, _ path: String, kind: CredentialKind) -> ProxyConfig? {
        let redisKeys = kind == .redis ? ["reauth_before"] : []
        guard let map = mapping(node, path, allowed: ["listen", "mode", "max_connections", "allow", "handshake_timeout",
                                                      "shutdown_grace"] + redisKeys) else { return nil }
        guard let listen = requiredString(map, "listen", path) else { return nil }
        guard let unixPath = proxyUnixPath(listen, "\(path).listen") else { return nil }
        var config: ProxyConfig
        if kind == .redis {
            config = ProxyConfig(directory: (unixPath as NSString).deletingLastPathComponent)
            config.socketFile = unixPath
        } else {
            config = ProxyConfig(directory: unixPath)
        }
        let socketPath = config.socketFile ?? config.postgresSocketPath
        if socketPath.utf8.count > 107 {
            issue("\(path).listen", "makes the socket \(socketPath), \(socketPath.utf8.count) bytes long; a Unix socket path may have at most 107")
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
        if let value = map["shutdown_grace"].flatMap({ seconds($0, "\(path).shutdown_grace", 0...3600) }) {
            config.shutdownGrace = value
        }
        if let value = map["reauth_before"].flatMap({ seconds($0, "\(path).reauth_before", 1...86400) }) {
            config.reauthBefore = value
        }
        return config
    }

    /// The path of `unix:/PATH`. Loopback TCP addresses are recognised and refused for now;
    /// any other address is refused for good: a proxy never listens beyond this machine.
    private mutating func proxyUnixPath(_ listen: String, _ path: String) -> String? {
        if listen.hasPrefix("unix:") {
            let directory = String(listen.dropFirst("unix:".count))
            guard directory.hasPrefix("/"), directory.count > 1 else {
                issue(path, "'\(listen)' does not name an absolute directory or socket path: use unix:/run/credagent/NAME")
                return nil
            }
            return directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        }
        let host = listen.lastIndex(of: ":").map { String(listen[..<$0]) } ?? listen
        if HostAddress.isLoopback(host) {
            issue(path, "'\(listen)': loopback TCP listeners are not available in this version; use unix:/DIR")
        } else {
            issue(path, "'\(listen)' is not a loopback address: a proxy listens on a Unix socket (unix:/DIR) or loopback only")
        }
        return nil
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
