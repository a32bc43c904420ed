import CredentialModel
import Foundation

/// A request of the socket API (docs/API.md), parsed from method and URI. Pure.
public enum Route: Sendable, Equatable {
    case list
    case credential(name: String, query: CredentialQuery)
    case refresh(name: String)
    case health
    case ready
    case metrics

    /// Options of `GET /v1/credentials/{name}`.
    public struct CredentialQuery: Sendable, Equatable {
        /// Refresh first if less than this many seconds would remain.
        public var minValid: TimeInterval?
        /// Long poll: wait up to this many seconds for a version other than `version`.
        public var wait: TimeInterval?
        public var version: Int?

        public init(minValid: TimeInterval? = nil, wait: TimeInterval? = nil, version: Int? = nil) {
            self.minValid = minValid
            self.wait = wait
            self.version = version
        }
    }

    /// Why a request matches no route.
    public enum Failure: Error, Sendable, Equatable {
        case notFound
        /// The path exists; these methods are allowed on it.
        case methodNotAllowed(allowed: String)
        /// The path names a route (its template is `route`) but the query is not one it takes.
        case badRequest(String, route: String)
    }

    /// The template of `GET /v1/credentials/{name}`.
    public static let credentialTemplate = "/v1/credentials/{name}"

    /// The template of a route, the `route` label of request metrics.
    public var template: String {
        switch self {
        case .list: "/v1/credentials"
        case .credential: Self.credentialTemplate
        case .refresh: "/v1/credentials/{name}/refresh"
        case .health: "/v1/health"
        case .ready: "/v1/ready"
        case .metrics: "/metrics"
        }
    }

    /// The longest long poll a client may ask for, in seconds.
    public static let maxWait: TimeInterval = 300

    private static let credentialPrefix = "/v1/credentials/"

    public static func parse(method: String, uri: String) -> Result<Route, Failure> {
        // The hot path, `GET /v1/credentials/{name}` without a query, without splitting.
        if method == "GET", uri.hasPrefix(credentialPrefix) {
            let name = uri.utf8.dropFirst(credentialPrefix.utf8.count)
            if !name.contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") }) {
                let name = String(Substring(name))
                return CredentialName.isValid(name) ? .success(.credential(name: name, query: CredentialQuery())) : .failure(.notFound)
            }
        }
        let (path, query) = split(uri)
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        /// A route without options: the method must match and no query may be given.
        func only(_ allowed: String, _ route: Route) -> Result<Route, Failure> {
            guard method == allowed else { return .failure(.methodNotAllowed(allowed: allowed)) }
            guard query.isEmpty else {
                return .failure(.badRequest("\(route.template) takes no query parameters", route: route.template))
            }
            return .success(route)
        }
        switch Array(segments) {
        case ["v1", "health"]: return only("GET", .health)
        case ["v1", "ready"]: return only("GET", .ready)
        case ["metrics"]: return only("GET", .metrics)
        case ["v1", "credentials"]: return only("GET", .list)
        case let parts where parts.count == 3 && parts[0] == "v1" && parts[1] == "credentials":
            let name = String(parts[2])
            guard CredentialName.isValid(name) else { return .failure(.notFound) }
            guard method == "GET" else { return .failure(.methodNotAllowed(allowed: "GET")) }
            return parseQuery(query).map { Route.credential(name: name, query: $0) }
        case let parts where parts.count == 4 && parts[0] == "v1" && parts[1] == "credentials" && parts[3] == "refresh":
            let name = String(parts[2])
            guard CredentialName.isValid(name) else { return .failure(.notFound) }
            return only("POST", .refresh(name: name))
        default:
            return .failure(.notFound)
        }
    }

    private static func split(_ uri: String) -> (path: Substring, query: Substring) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri[...], "") }
        return (uri[..<mark], uri[uri.index(after: mark)...])
    }

    private static func parseQuery(_ query: Substring) -> Result<CredentialQuery, Failure> {
        func refused(_ message: String) -> Result<CredentialQuery, Failure> {
            .failure(.badRequest(message, route: credentialTemplate))
        }
        var result = CredentialQuery()
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = parts[0], value = parts.count > 1 ? parts[1] : ""
            switch key {
            case "min_valid":
                guard let seconds = decimalSeconds(value) else {
                    return refused("min_valid must be a decimal number of seconds >= 0, like 60 or 1.5")
                }
                result.minValid = seconds
            case "wait":
                guard let seconds = decimalSeconds(value), seconds <= maxWait else {
                    return refused("wait must be a decimal number of seconds from 0 to \(Int(maxWait)), like 30")
                }
                result.wait = seconds
            case "version":
                guard isDigits(value), let version = Int(value) else {
                    return refused("version must be a whole decimal number >= 0, like 3")
                }
                result.version = version
            default:
                return refused("unknown query parameter '\(key.prefix(40))' (allowed: min_valid, wait, version)")
            }
        }
        if result.wait != nil, result.version == nil {
            return refused("wait needs version, the version the client already has")
        }
        if result.wait != nil, result.minValid != nil {
            return refused("wait and min_valid cannot be combined")
        }
        return .success(result)
    }

    /// Seconds written as plain decimal digits with an optional fraction (`60`, `1.5`); nil for
    /// anything else `Double` would read: hex (`0x10`), exponents, signs, `inf`, `nan`.
    static func decimalSeconds(_ text: Substring) -> TimeInterval? {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.allSatisfy(isDigits), text.utf8.count <= 20 else { return nil }
        return Double(text)
    }

    /// Whether `text` is one or more ASCII digits.
    private static func isDigits(_ text: Substring) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }
}
