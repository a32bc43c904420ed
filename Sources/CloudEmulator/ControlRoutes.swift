import CloudAuth
import Foundation
import Synchronization

/// What ``CloudEmulator/verify(_:host:port:user:audience:)`` found out about a token.
public struct TokenVerdict: Sendable, Equatable {
    /// `rds`, `elasticache`, `memorydb` (SigV4 connect tokens), `jwt`, or `access-token` (opaque).
    public var kind: String
    /// Why the token is refused; nil when it is valid.
    public var reason: String?
    /// The database or cache user a connect token is bound to.
    public var user: String?
    /// The endpoint a connect token is bound to: `host:port` (RDS) or the cache name.
    public var boundTo: String?
    /// Who the token speaks for: the signer's role session ARN, or the JWT's `sub`.
    public var principal: String?
    /// Seconds since 1970.
    public var expiresAt: Int?

    public var isValid: Bool { reason == nil }
}

/// The emulator's own endpoints, on every listener under `/emulator/`: token verification (so local
/// servers and scripts can check the real rotating tokens), failure injection and request counts.
///
/// - `POST /emulator/verify` `{"token": "...", "host": "...", "port": 5432, "user": "...", "audience": "..."}`:
///   200 with the verdict when valid, 401 with `reason` when not.
/// - `POST /emulator/faults` `{"endpoint": NAME|aws|azure|gcp|all, "fault": status|latency|down|expired-token|malformed-json|drop-metadata-flavor,
///   "status": 503, "body": "...", "seconds": 2.5, "rate": 0.2, "after": 10, "times": 3}`
/// - `DELETE /emulator/faults[?endpoint=NAME|CLOUD]`: behave normally again.
/// - `GET /emulator/requests`: requests per endpoint since start.
extension CloudEmulator {
    /// Checks a token this emulator's keys produced: an AWS IAM connect token (SigV4 signature by
    /// keys it issued, the token's and the keys' expiry, the host and user it is bound to), a JWT
    /// it signed (signature, `exp`/`nbf`, audience), or an opaque token it issued (expiry).
    public func verify(_ token: String, host: String? = nil, port: Int? = nil, user: String? = nil,
                       audience: String? = nil, now: Date = Date()) -> TokenVerdict {
        if token.contains("X-Amz-Signature=") { return verifyConnectToken(token, host: host, port: port, user: user, now: now) }
        if let decoded = try? JWT.decode(token, source: "token") {
            return verifyJWT(decoded, audience: audience, now: now)
        }
        guard let expiry = expiryOfIssued(token, as: .opaqueAccessToken) else {
            return TokenVerdict(kind: "access-token", reason: "not a token this emulator issued")
        }
        return TokenVerdict(kind: "access-token", reason: expiry > Int(now.timeIntervalSince1970) ? nil : "expired",
                            expiresAt: expiry)
    }

    private func verifyConnectToken(_ token: String, host: String?, port: Int?, user: String?, now: Date) -> TokenVerdict {
        var verdict = TokenVerdict(kind: "aws-iam")
        let signature: SigV4Verifier.Signature
        switch signatureVerifier.verifyToken(token, now: now) {
        case let .failure(rejection):
            verdict.reason = rejection.description
            return verdict
        case let .success(valid):
            signature = valid
        }
        let authority = String(token.prefix { $0 != "/" }).lowercased()
        func parameter(_ name: String) -> String? { signature.parameters.first { $0.name == name }?.value }
        let key = state.withLock { $0.awsKeys[signature.accessKeyID] }
        verdict.principal = key?.arn
        verdict.boundTo = authority
        verdict.expiresAt = min(signature.expiresAt.map { Int($0.timeIntervalSince1970) } ?? .max, key?.expiresAt ?? .max)
        let expectedAuthority: String?
        switch signature.service {
        case "rds-db":
            verdict.kind = "rds"
            verdict.user = parameter("DBUser")
            expectedAuthority = host.map { "\($0):\(port ?? 5432)".lowercased() }
        case "elasticache", "memorydb":
            verdict.kind = signature.service
            verdict.user = parameter("User")
            expectedAuthority = host?.lowercased()
        default:
            verdict.reason = "signed for service '\(signature.service)', not rds-db, elasticache or memorydb"
            return verdict
        }
        if parameter("Action") != "connect" {
            verdict.reason = "Action is not connect"
        } else if let expectedAuthority, expectedAuthority != authority {
            verdict.reason = "bound to \(authority), not \(expectedAuthority)"
        } else if let user, verdict.user != user {
            verdict.reason = "bound to user '\(verdict.user ?? "")', not '\(user)'"
        }
        return verdict
    }

    private func verifyJWT(_ decoded: JWT.Decoded, audience: String?, now: Date) -> TokenVerdict {
        var verdict = TokenVerdict(kind: "jwt")
        verdict.principal = decoded.string("sub")
        verdict.expiresAt = decoded.date("exp").map { Int($0.timeIntervalSince1970) }
        if !decoded.hasValidSignature(key: signingKey) {
            verdict.reason = "the signature is not the emulator's"
        } else if (decoded.date("exp").map { $0 <= now }) ?? true {
            verdict.reason = "expired"
        } else if let notBefore = decoded.date("nbf"), notBefore > now.addingTimeInterval(60) {
            verdict.reason = "not valid yet"
        } else if let audience, !decoded.audiences.contains(audience) {
            verdict.reason = "audience is \(decoded.audiences), not \(audience)"
        }
        return verdict
    }

    func routeControl(_ request: EmulatorRequest) -> EmulatorResponse {
        switch (request.method, request.path) {
        case ("POST", "/emulator/verify"):
            guard let body = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any],
                  let token = body["token"] as? String else {
                return .json(400, ["error": "the body must be a JSON object with a \"token\" string"])
            }
            let verdict = verify(token, host: body["host"] as? String, port: (body["port"] as? NSNumber)?.intValue,
                                 user: body["user"] as? String, audience: body["audience"] as? String)
            var answer: [String: any Sendable] = ["valid": verdict.isValid, "kind": verdict.kind]
            for (name, value) in [("reason", verdict.reason), ("user", verdict.user), ("bound_to", verdict.boundTo),
                                  ("principal", verdict.principal)] {
                if let value { answer[name] = value }
            }
            if let expiresAt = verdict.expiresAt { answer["expires_at"] = expiresAt }
            return .json(verdict.isValid ? 200 : 401, answer)
        case ("POST", "/emulator/faults"):
            return injectFault(request.body)
        case ("DELETE", "/emulator/faults"):
            guard let endpoints = endpoints(named: request.parameter("endpoint") ?? "all") else {
                return .json(404, ["error": "unknown endpoint; names: \(Endpoint.allCases.map(\.rawValue).joined(separator: ", ")), or aws, azure, gcp, all"])
            }
            for endpoint in endpoints { clearFailure(at: endpoint) }
            return .json(200, ["cleared": endpoints.map(\.rawValue)])
        case ("GET", "/emulator/requests"):
            return .json(200, Dictionary(uniqueKeysWithValues: Endpoint.allCases.map { ($0.rawValue, requestCount($0) as any Sendable) }))
        default:
            return .json(404, ["error": "emulator routes: POST /emulator/verify, POST|DELETE /emulator/faults, GET /emulator/requests"])
        }
    }

    /// One endpoint by name, every endpoint of a cloud, or all of them.
    private func endpoints(named name: String) -> [Endpoint]? {
        if name == "all" { return Endpoint.allCases }
        if let endpoint = Endpoint(rawValue: name) { return [endpoint] }
        let ofCloud = Endpoint.allCases.filter { $0.cloud == name }
        return ofCloud.isEmpty ? nil : ofCloud
    }

    private func injectFault(_ body: [UInt8]) -> EmulatorResponse {
        func bad(_ message: String) -> EmulatorResponse { .json(400, ["error": message]) }
        guard let fields = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            return bad("the body must be a JSON object like {\"endpoint\": \"aws-imds-credentials\", \"fault\": \"status\", \"status\": 503}")
        }
        guard let name = fields["endpoint"] as? String, let endpoints = endpoints(named: name) else {
            return bad("endpoint must be one of \(Endpoint.allCases.map(\.rawValue).joined(separator: ", ")), or aws, azure, gcp, all")
        }
        func number(_ key: String) -> Double? { (fields[key] as? NSNumber)?.doubleValue }
        /// A whole number in `range`, or nil (absent, fractional, out of range).
        func integer(_ key: String, in range: ClosedRange<Int>) -> Int? {
            guard let value = number(key), value.isFinite, value.rounded() == value,
                  value >= Double(range.lowerBound), value <= Double(range.upperBound) else { return nil }
            return Int(value)
        }
        let failure: Failure
        switch fields["fault"] as? String {
        case "status":
            guard let status = fields["status"] == nil ? 503 : integer("status", in: 400...599) else {
                return bad("status must be an error status (400-599)")
            }
            failure = .status(status, body: fields["body"] as? String ?? #"{"error":"injected by the emulator"}"#)
        case "latency":
            guard let seconds = number("seconds"), seconds > 0, seconds <= 600 else { return bad("latency needs seconds (0-600]") }
            failure = .stall(seconds: seconds)
        case "down": failure = .down
        case "expired-token": failure = .expiredToken
        case "malformed-json": failure = .malformedJSON
        case "drop-metadata-flavor": failure = .dropMetadataFlavor
        default:
            return bad("fault must be status, latency, down, expired-token, malformed-json or drop-metadata-flavor")
        }
        let rate = number("rate") ?? 1
        guard rate > 0, rate <= 1 else { return bad("rate must be in (0, 1]") }
        let times = integer("times", in: 1...1_000_000_000)
        if fields["times"] != nil, times == nil { return bad("times must be a whole number of failures from 1 (leave it out for until cleared)") }
        guard let after = fields["after"] == nil ? 0 : integer("after", in: 0...1_000_000_000) else {
            return bad("after must be a whole number of requests, 0 or more")
        }
        for endpoint in endpoints { inject(failure, at: endpoint, times: times, after: after, rate: rate) }
        return .json(200, ["injected": endpoints.map(\.rawValue)])
    }
}
