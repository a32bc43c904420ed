import Foundation

/// The parts of an absolute http(s) URL that signing and error messages need.
///
/// Deliberately small: it splits, it does not normalise. `redacted` is the form safe for logs and
/// errors: scheme, host, port and path, no query (a presigned query holds a signature).
public struct EndpointURL: Sendable, Equatable {
    public var scheme: String
    public var host: String
    public var port: Int?
    /// The path as written, percent-encoding kept; "/" when empty.
    public var path: String
    /// The raw query after `?`, without it; nil when absent.
    public var query: String?

    public init(scheme: String, host: String, port: Int?, path: String, query: String?) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
        self.query = query
    }

    /// Parses `url`; throws naming the input when it is not an absolute http(s) URL.
    public init(parsing url: String) throws {
        func invalid(_ why: String) -> CloudAuthError {
            CloudAuthError(.invalidInput, source: "URL '\(EndpointURL.stripQuery(url))'", why,
                           remedy: "use scheme://host[:port][/path]")
        }
        guard let schemeEnd = url.range(of: "://") else { throw invalid("it has no scheme") }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { throw invalid("the scheme '\(scheme)' is not http or https") }
        var rest = url[schemeEnd.upperBound...]
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        if authority.contains("@") { throw invalid("user information in URLs is not supported") }
        var host: Substring
        var port: Int?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw invalid("the IPv6 address is not closed") }
            host = authority[...close]
            authority = authority[authority.index(after: close)...]
            if authority.hasPrefix(":") { port = Int(authority.dropFirst()) ?? -1 }
            else if !authority.isEmpty { throw invalid("unexpected text after the IPv6 address") }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            port = Int(authority[authority.index(after: colon)...]) ?? -1
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw invalid("it has no host") }
        if let port, !(1...65535).contains(port) { throw invalid("the port is not a number from 1 to 65535") }
        let pathAndQuery = rest[authorityEnd...]
        var path = pathAndQuery
        var query: String?
        if let mark = pathAndQuery.firstIndex(of: "?") {
            path = pathAndQuery[..<mark]
            query = String(pathAndQuery[pathAndQuery.index(after: mark)...])
        }
        self.init(scheme: scheme, host: host.lowercased(), port: port,
                  path: path.isEmpty ? "/" : String(path), query: query)
    }

    /// The port a connection goes to: the explicit one or the scheme's default.
    public var effectivePort: Int { port ?? (scheme == "https" ? 443 : 80) }

    /// `host` or `host:port`, leaving out the scheme's default port as the AWS SDKs do.
    public var hostHeader: String {
        guard let port, port != (scheme == "https" ? 443 : 80) else { return host }
        return "\(host):\(port)"
    }

    /// scheme://host[:port]/path with no query: fit for logs and errors.
    public var redacted: String { "\(scheme)://\(hostHeader)\(path)" }

    /// The whole URL again.
    public var string: String {
        "\(scheme)://\(hostHeader)\(path)" + (query.map { "?\($0)" } ?? "")
    }

    /// Whether the host is a link-local or metadata address that must never go through a proxy.
    public var isMetadataOrLocalHost: Bool {
        let bare = host.trimmingCharacters(in: ["[", "]"])
        return bare.hasPrefix("169.254.") || bare.hasPrefix("fe80:") || bare == "fd00:ec2::254"
            || bare == "metadata.google.internal" || bare == "metadata" || HostAddress.isLoopback(host)
    }

    /// `url` without its query and fragment, for messages about input that did not parse.
    public static func stripQuery(_ url: String) -> String {
        String(url.prefix { $0 != "?" && $0 != "#" })
    }
}
