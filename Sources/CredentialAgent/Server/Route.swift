import CredentialModel
import Foundation

/// A request of the socket API (DESIGN section 4), parsed from method and URI. Pure.
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
        case badRequest(String)
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
        func only(_ allowed: String, _ route: Route) -> Result<Route, Failure> {
            method == allowed ? .success(route) : .failure(.methodNotAllowed(allowed: allowed))
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
        var result = CredentialQuery()
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = parts[0], value = parts.count > 1 ? parts[1] : ""
            switch key {
            case "min_valid":
                guard let seconds = Double(value), seconds >= 0, seconds.isFinite else {
                    return .failure(.badRequest("min_valid must be a number of seconds >= 0"))
                }
                result.minValid = seconds
            case "wait":
                guard let seconds = Double(value), seconds >= 0, seconds <= maxWait else {
                    return .failure(.badRequest("wait must be a number of seconds from 0 to \(Int(maxWait))"))
                }
                result.wait = seconds
            case "version":
                guard let version = Int(value), version >= 0 else {
                    return .failure(.badRequest("version must be a whole number >= 0"))
                }
                result.version = version
            default:
                return .failure(.badRequest("unknown query parameter '\(key.prefix(40))' (allowed: min_valid, wait, version)"))
            }
        }
        if result.wait != nil, result.version == nil {
            return .failure(.badRequest("wait needs version, the version the client already has"))
        }
        if result.wait != nil, result.minValid != nil {
            return .failure(.badRequest("wait and min_valid cannot be combined"))
        }
        return .success(result)
    }
}
