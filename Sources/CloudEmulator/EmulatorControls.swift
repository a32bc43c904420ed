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

        /// Whether the real endpoint is the GCP metadata server (answers carry `Metadata-Flavor: Google`).
        var isGCPMetadata: Bool { [.gcpMetadataToken, .gcpMetadataIdentity, .gcpMetadataEmail].contains(self) }
    }

    /// A way for an endpoint to misbehave, switched on at runtime with ``inject(_:at:times:)``.
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
    }

    /// Makes `endpoint` misbehave as `failure` for the next `times` requests (nil: until cleared).
    public func inject(_ failure: Failure, at endpoint: Endpoint, times: Int? = nil) {
        state.withLock { $0.failures[endpoint] = (failure, times) }
    }

    /// Makes `endpoint` behave normally again.
    public func clearFailure(at endpoint: Endpoint) {
        state.withLock { $0.failures[endpoint] = nil }
    }

    /// Makes every endpoint behave normally again.
    public func clearFailures() {
        state.withLock { $0.failures = [:] }
    }

    /// How many requests `endpoint` has received since start (or ``resetCounts()``).
    public func requestCount(_ endpoint: Endpoint) -> Int {
        state.withLock { $0.counts[endpoint, default: 0] }
    }

    public func resetCounts() {
        state.withLock { $0.counts = [:] }
    }

    /// The lifetime of tokens issued from now on.
    public var tokenLifetime: TimeInterval {
        get { state.withLock { $0.tokenLifetime } }
        set { state.withLock { $0.tokenLifetime = max(1, newValue) } }
    }

    /// Whether `token` is one this emulator issued (and has not forgotten: it keeps the last 10,000).
    public func wasIssued(_ token: String) -> Bool {
        let digest = Encoding.hex(Digest.sha256(token))
        return state.withLock { $0.issued.contains(digest) }
    }

    /// Counts a request and takes the failure to apply to it, if any.
    func takeFailure(_ endpoint: Endpoint) -> Failure? {
        state.withLock { state in
            state.counts[endpoint, default: 0] += 1
            guard let (failure, times) = state.failures[endpoint] else { return nil }
            if let times {
                state.failures[endpoint] = times <= 1 ? nil : (failure, times - 1)
            }
            return failure
        }
    }

    func remember(_ token: String) {
        let digest = Encoding.hex(Digest.sha256(token))
        state.withLock { state in
            if state.issuedOrder.count >= 10_000 { state.issued.remove(state.issuedOrder.removeFirst()) }
            if state.issued.insert(digest).inserted { state.issuedOrder.append(digest) }
        }
    }
}

/// What changes while the emulator runs.
struct EmulatorState: Sendable {
    var tokenLifetime: TimeInterval
    var failures: [CloudEmulator.Endpoint: (CloudEmulator.Failure, Int?)] = [:]
    var counts: [CloudEmulator.Endpoint: Int] = [:]
    var issued: Set<String> = []
    var issuedOrder: [String] = []
}
