import CloudAuth
import Foundation
import Synchronization

extension CloudEmulator {
    /// The emulated endpoints, for failure injection and request counts.
    public enum Endpoint: String, Sendable, CaseIterable {
        /// IMDS `/metadata/identity/oauth2/token`.
        case azureIMDSToken = "azure-imds-token"
        /// IMDS `/metadata/instance`.
        case azureInstanceMetadata = "azure-instance-metadata"
        /// App Service identity endpoint `/msi/token`.
        case azureAppServiceToken = "azure-app-service-token"
        /// Entra ID `/azure/{tenant}/oauth2/v2.0/token` (workload identity).
        case azureEntraToken = "azure-entra-token"
        /// Azure issuer's OIDC discovery document and JWKS.
        case azureDiscovery = "azure-discovery"
        /// Metadata server `.../service-accounts/{sa}/token`.
        case gcpMetadataToken = "gcp-metadata-token"
        /// Metadata server `.../service-accounts/{sa}/identity`.
        case gcpMetadataIdentity = "gcp-metadata-identity"
        /// Metadata server `.../service-accounts/{sa}/email`.
        case gcpMetadataEmail = "gcp-metadata-email"
        /// Google OAuth token endpoint `/gcp/token` (key-file assertions).
        case gcpOAuthToken = "gcp-oauth-token"
        /// GCP issuer's OIDC discovery document and JWKS.
        case gcpDiscovery = "gcp-discovery"
        /// IAM Credentials `/v1/projects/-/serviceAccounts/{email}:signJwt` (Vault's gcp iam login).
        case gcpSignJWT = "gcp-sign-jwt"
        /// EC2 IMDSv2 session token `PUT /latest/api/token`.
        case awsIMDSToken = "aws-imds-token"
        /// EC2 IMDS role credentials `/latest/meta-data/iam/security-credentials/{role}`.
        case awsIMDSCredentials = "aws-imds-credentials"
        /// ECS / EKS Pod Identity container credentials endpoint.
        case awsContainerCredentials = "aws-container-credentials"
        /// STS at `/`: `GetCallerIdentity`, `AssumeRole`, `AssumeRoleWithWebIdentity`.
        case awsSTS = "aws-sts"

        /// Whether the real endpoint is the GCP metadata server (answers carry `Metadata-Flavor: Google`).
        var isGCPMetadata: Bool { [.gcpMetadataToken, .gcpMetadataIdentity, .gcpMetadataEmail].contains(self) }

        /// The cloud the endpoint belongs to: `aws`, `azure` or `gcp`, the prefix of its name.
        public var cloud: String { String(rawValue.prefix { $0 != "-" }) }
    }

    /// A way for an endpoint to misbehave, switched on at runtime with ``inject(_:at:times:after:rate:)``.
    public enum Failure: Sendable, Equatable {
        /// Answer with this status and body (JSON, as the clouds' error bodies are).
        case status(Int, body: String)
        /// Answer normally, but only after this many seconds.
        case stall(seconds: Double)
        /// Answer normally without the `Metadata-Flavor: Google` header.
        case dropMetadataFlavor
        /// Answer with the first half of the normal body.
        case malformedJSON
        /// Issue a token that expired two minutes ago.
        case expiredToken
        /// Serve this body verbatim (for documented sample responses).
        case body(status: Int, contentType: String, body: String)
        /// Close the connection without answering, as an endpoint that has gone down.
        case down
    }

    /// Makes `endpoint` misbehave as `failure`: after `after` more normal answers, each request
    /// fails with probability `rate` (1: every one; 0.2: an error rate of 20 %), until `times`
    /// failures have been served (nil: until cleared).
    public func inject(_ failure: Failure, at endpoint: Endpoint, times: Int? = nil, after: Int = 0, rate: Double = 1) {
        let armed = ArmedFailure(failure: failure, remaining: times, normalAnswersFirst: max(0, after),
                                 rate: min(1, max(0, rate)))
        state.withLock { $0.failures[endpoint] = armed }
    }

    /// Makes `endpoint` behave normally again.
    public func clearFailure(at endpoint: Endpoint) {
        state.withLock { $0.failures[endpoint] = nil }
    }

    /// Makes every endpoint behave normally again.
    public func clearFailures() {
        state.withLock { $0.failures = [:] }
    }

    /// How many requests `endpoint` has received since start.
    public func requestCount(_ endpoint: Endpoint) -> Int {
        state.withLock { $0.counts[endpoint, default: 0] }
    }

    /// The lifetime of tokens issued from now on.
    public var tokenLifetime: TimeInterval {
        get { state.withLock { $0.tokenLifetime } }
        set { state.withLock { $0.tokenLifetime = max(1, newValue) } }
    }

    /// Whether `token` is one this emulator issued, of any kind (and has not forgotten: it keeps
    /// the last 10,000).
    public func wasIssued(_ token: String) -> Bool {
        let digest = Encoding.hex(Digest.sha256(token))
        return state.withLock { $0.issued[digest] } != nil
    }

    /// Counts a request and takes the failure to apply to it, if any.
    func takeFailure(_ endpoint: Endpoint) -> Failure? {
        state.withLock { state in
            state.counts[endpoint, default: 0] += 1
            guard var armed = state.failures[endpoint] else { return nil }
            defer { state.failures[endpoint] = armed.remaining == 0 ? nil : armed }
            if armed.normalAnswersFirst > 0 {
                armed.normalAnswersFirst -= 1
                return nil
            }
            guard armed.rate >= 1 || Double.random(in: 0..<1) < armed.rate else { return nil }
            armed.remaining = armed.remaining.map { $0 - 1 }
            return armed.failure
        }
    }

    /// Remembers `token` as issued, of `kind`, valid until `expiresAt` (seconds since 1970).
    func remember(_ token: String, kind: IssuedKind, expiresAt: Int = .max) {
        let digest = Encoding.hex(Digest.sha256(token))
        state.withLock { $0.issued.insert(digest, IssuedSecret(kind: kind, expiresAt: expiresAt)) }
    }

    /// When `token` expires (seconds since 1970), if this emulator issued it as `kind`; nil otherwise.
    func expiryOfIssued(_ token: String, as kind: IssuedKind) -> Int? {
        let digest = Encoding.hex(Digest.sha256(token))
        return state.withLock { $0.issued[digest] }.flatMap { $0.kind == kind ? $0.expiresAt : nil }
    }
}

/// What an issued secret was issued as: one kind is never accepted for another (an AWS secret
/// key is not an IMDS session token, nor a GCP access token).
enum IssuedKind: Sendable {
    case imdsSession, awsKey, opaqueAccessToken, jwt
}

/// One remembered secret.
struct IssuedSecret: Sendable {
    var kind: IssuedKind
    var expiresAt: Int
}

/// A failure switched on at an endpoint, with what is left of it.
struct ArmedFailure: Sendable {
    var failure: CloudEmulator.Failure
    /// Requests still to fail; nil: until cleared.
    var remaining: Int?
    var normalAnswersFirst: Int
    var rate: Double
}

/// A map that forgets its oldest entries beyond a bound (the emulator's memory of what it issued).
struct BoundedMemory<Value: Sendable>: Sendable {
    private var values: [String: Value] = [:]
    private var order: [String] = []
    private var start = 0
    let limit: Int

    init(limit: Int) { self.limit = limit }

    subscript(key: String) -> Value? { values[key] }

    mutating func insert(_ key: String, _ value: Value) {
        if values.updateValue(value, forKey: key) != nil { return }
        order.append(key)
        if order.count - start > limit {
            values[order[start]] = nil
            start += 1
            if start > limit {
                order.removeFirst(start)
                start = 0
            }
        }
    }
}

/// What changes while the emulator runs.
struct EmulatorState: Sendable {
    var tokenLifetime: TimeInterval
    var failures: [CloudEmulator.Endpoint: ArmedFailure] = [:]
    var counts: [CloudEmulator.Endpoint: Int] = [:]
    /// SHA-256 of each secret issued, with its kind and expiry; the last 10,000.
    var issued = BoundedMemory<IssuedSecret>(limit: 10_000)
    /// AWS keys issued (IMDS, container endpoint, STS), by access key id; the last 10,000.
    var awsKeys = BoundedMemory<CloudEmulator.IssuedAWSKey>(limit: 10_000)
}
