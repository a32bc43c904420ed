import Foundation
import Synchronization

/// Finds AWS credentials the way the AWS SDKs do and keeps them fresh.
///
/// Order: environment keys, web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`), the shared config
/// profile, the container endpoint (ECS / EKS Pod Identity), EC2 instance metadata (IMDSv2).
/// The first source that yields keys wins; with `assumeRoleARN` set, those keys then assume that
/// role. When none yields, the error lists what each source said.
///
/// Credentials are cached and fetched again once less than five minutes remain, so calling
/// ``credentials()`` for every token costs a lock. Concurrent callers share one fetch.
public final class AWSCredentialChain: Sendable {
    /// Credentials with less than this left are fetched again.
    public static let refreshMargin: TimeInterval = 300

    public let settings: AWSSettings
    private let http: any HTTPClient
    private let environment: [String: String]
    private let now: @Sendable () -> Date
    private let state = Mutex(State())

    private let fetches = SingleFlight<AWSCredentials>()

    private struct State {
        var cached: AWSCredentials?
        var region: String?
    }

    /// - Parameters:
    ///   - environment: the process environment (pass your own in tests); read only through this.
    ///   - now: the clock, for cache expiry and signing.
    public init(settings: AWSSettings, http: any HTTPClient, environment: [String: String],
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.settings = settings
        self.http = http
        self.environment = environment
        self.now = now
    }

    // MARK: Credentials

    /// Current credentials, from the cache while more than five minutes of them remain.
    public func credentials() async throws -> AWSCredentials {
        if let cached = state.withLock({ $0.cached }), isFresh(cached) { return cached }
        // Cached within the shared fetch, so that a caller arriving as it ends finds the new keys.
        return try await fetches.run(key: "credentials") {
            let credentials = try await self.resolve()
            self.state.withLock { $0.cached = credentials }
            return credentials
        }
    }

    private func isFresh(_ credentials: AWSCredentials) -> Bool {
        guard let expiration = credentials.expiration else { return true }
        return expiration.timeIntervalSince(now()) > Self.refreshMargin
    }

    private func resolve() async throws -> AWSCredentials { try await resolveAfresh().credentials }

    /// One pass over the sources, then the optional assume-role on top, bypassing and leaving
    /// alone the cache: the credentials and the link of the chain that yielded them
    /// (`environment`, `web identity`, `profile`, `container` or `imds`). For diagnosis; tokens
    /// use ``credentials()``.
    public func resolveAfresh() async throws -> (link: String, credentials: AWSCredentials) {
        var reports: [String] = []
        var firstFailure: CloudAuthError?
        var found: (link: String, credentials: AWSCredentials)?
        let sources: [(name: String, fetch: () async throws -> Outcome)] = [
            ("environment", environmentKeys),
            ("web identity", webIdentity),
            ("profile", profile),
            ("container", container),
            ("imds", instanceMetadata),
        ]
        for source in sources {
            do {
                switch try await source.fetch() {
                case .notConfigured(let why):
                    reports.append("\(source.name): \(why)")
                    continue
                case .credentials(let credentials):
                    try checkNotExpired(credentials)
                    found = (source.name, credentials)
                }
            } catch let error as CloudAuthError {
                reports.append("\(source.name): \(error)")
                firstFailure = firstFailure ?? error
                continue
            }
            break
        }
        guard let found else {
            throw CloudAuthError(firstFailure?.code ?? .configuration, source: "AWS credential chain",
                                 "no source yielded credentials: " + reports.joined(separator: "; "),
                                 remedy: "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a web identity, a profile, or run where a container or instance role is attached")
        }
        var credentials = found.credentials
        if let roleARN = settings.assumeRoleARN, !roleARN.isEmpty {
            credentials = try await sts().assumeRole(roleARN: roleARN, sessionName: sessionName(),
                                                     with: credentials, at: now())
            try checkNotExpired(credentials)
        }
        return (found.link, credentials)
    }

    /// Whom `credentials` belong to, asked of STS (`GetCallerIdentity`) at the endpoint the chain
    /// uses for its own STS calls.
    public func callerIdentity(with credentials: AWSCredentials) async throws -> AWSCallerIdentity {
        try await sts().callerIdentity(with: credentials, at: now())
    }

    private enum Outcome {
        case credentials(AWSCredentials)
        case notConfigured(String)
    }

    private func checkNotExpired(_ credentials: AWSCredentials) throws {
        if let expiration = credentials.expiration, expiration <= now() {
            throw CloudAuthError(.expired, source: credentials.source,
                                 "the credentials expired at \(Timestamp.format(expiration))",
                                 remedy: "check the clock, or the process that writes these credentials")
        }
    }

    private func value(_ name: String) -> String? {
        environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    private func sessionName() -> String {
        value("AWS_ROLE_SESSION_NAME") ?? "credagent-\(Int(now().timeIntervalSince1970))"
    }

    // MARK: Sources

    private func environmentKeys() async throws -> Outcome {
        let accessKey = value("AWS_ACCESS_KEY_ID"), secret = value("AWS_SECRET_ACCESS_KEY")
        switch (accessKey, secret) {
        case (nil, nil):
            return .notConfigured("AWS_ACCESS_KEY_ID is not set")
        case (.some, nil):
            throw CloudAuthError(.invalidInput, source: "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        case (nil, .some):
            throw CloudAuthError(.invalidInput, source: "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not")
        case let (.some(accessKey), .some(secret)):
            var expiration: Date?
            if let text = value("AWS_CREDENTIAL_EXPIRATION") {
                guard let date = Timestamp.parse(text) else {
                    throw CloudAuthError(.invalidInput, source: "AWS_CREDENTIAL_EXPIRATION", "'\(text)' is not an ISO 8601 time")
                }
                expiration = date
            }
            return .credentials(AWSCredentials(accessKeyID: accessKey, secretAccessKey: Secret(secret),
                                               sessionToken: value("AWS_SESSION_TOKEN").map(Secret.init),
                                               expiration: expiration, source: "environment"))
        }
    }

    private func webIdentity() async throws -> Outcome {
        guard let tokenFile = value("AWS_WEB_IDENTITY_TOKEN_FILE") else {
            return .notConfigured("AWS_WEB_IDENTITY_TOKEN_FILE is not set")
        }
        guard let roleARN = value("AWS_ROLE_ARN") else {
            throw CloudAuthError(.configuration, source: "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not")
        }
        // Re-read on every fetch: the platform (EKS, GitHub Actions) rotates the file.
        let token: String
        do {
            token = try await LocalFile.readTrimmedText(tokenFile)
        } catch {
            throw CloudAuthError(.io, source: "AWS_WEB_IDENTITY_TOKEN_FILE (\(tokenFile))", "the token file cannot be read",
                                 remedy: "check that the projected token volume is mounted and readable")
        }
        guard !token.isEmpty else {
            throw CloudAuthError(.invalidInput, source: "AWS_WEB_IDENTITY_TOKEN_FILE (\(tokenFile))", "the token file is empty")
        }
        let credentials = try await sts().assumeRoleWithWebIdentity(roleARN: roleARN, sessionName: sessionName(),
                                                                    token: Secret(token), at: now())
        return .credentials(credentials)
    }

    private func profile() async throws -> Outcome {
        let explicit = settings.profile ?? value("AWS_PROFILE")
        let name = explicit ?? "default"
        let config = try await AWSSharedConfig.read(environment: environment)
        guard let keys = config.profiles[name] else {
            if explicit != nil {
                throw CloudAuthError(.configuration, source: "profile \(name)", "the profile is not in \(config.files)",
                                     remedy: "check AWS_PROFILE / aws.profile, or AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE")
            }
            return .notConfigured("no default profile in \(config.files)")
        }
        if let credentials = try staticKeys(keys, profile: name, config: config) { return .credentials(credentials) }
        guard let roleARN = keys["role_arn"] else {
            return .notConfigured("profile \(name) holds neither keys nor role_arn")
        }
        guard let sourceName = keys["source_profile"] else {
            throw CloudAuthError(.configuration, source: "profile \(name)",
                                 "role_arn without source_profile is not supported (credential_source and SSO are not)",
                                 remedy: "add source_profile naming a profile with keys")
        }
        guard let sourceKeys = config.profiles[sourceName],
              let base = try staticKeys(sourceKeys, profile: sourceName, config: config) else {
            throw CloudAuthError(.configuration, source: "profile \(name)",
                                 "source_profile '\(sourceName)' is missing or holds no aws_access_key_id/aws_secret_access_key",
                                 remedy: "only one hop of role_arn + source_profile is supported")
        }
        let duration = try keys["duration_seconds"].map { text -> Int in
            guard let seconds = Int(text), seconds >= 900 else {
                throw CloudAuthError(.invalidInput, source: "profile \(name) duration_seconds", "'\(text)' is not a number of seconds >= 900")
            }
            return seconds
        }
        var assumed = try await sts().assumeRole(roleARN: roleARN, sessionName: keys["role_session_name"] ?? sessionName(),
                                                 externalID: keys["external_id"], durationSeconds: duration,
                                                 with: base, at: now())
        assumed.source = "profile \(name) (assume-role \(roleARN))"
        return .credentials(assumed)
    }

    private func staticKeys(_ keys: [String: String], profile: String, config: AWSSharedConfig) throws -> AWSCredentials? {
        let accessKey = keys["aws_access_key_id"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = keys["aws_secret_access_key"].flatMap { $0.isEmpty ? nil : $0 }
        switch (accessKey, secret) {
        case (nil, nil):
            return nil
        case let (.some(accessKey), .some(secret)):
            let token = (keys["aws_session_token"] ?? keys["aws_security_token"]).flatMap { $0.isEmpty ? nil : Secret($0) }
            return AWSCredentials(accessKeyID: accessKey, secretAccessKey: Secret(secret), sessionToken: token,
                                  source: "profile \(profile)")
        default:
            throw CloudAuthError(.invalidInput, source: "profile \(profile) in \(config.files)",
                                 "the profile has only one of aws_access_key_id and aws_secret_access_key")
        }
    }

    private func container() async throws -> Outcome {
        guard let endpoint = try AWSContainerCredentials(environment: environment, http: http) else {
            return .notConfigured("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI are not set")
        }
        return .credentials(try await endpoint.credentials())
    }

    private func instanceMetadata() async throws -> Outcome {
        if AWSInstanceMetadata.isDisabled(environment) {
            return .notConfigured("disabled by AWS_EC2_METADATA_DISABLED")
        }
        return .credentials(try await imds().credentials())
    }

    private func imds() -> AWSInstanceMetadata {
        AWSInstanceMetadata(endpoint: AWSInstanceMetadata.endpoint(settings: settings, environment: environment), http: http)
    }

    // MARK: Region and endpoints

    /// The region: config, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, then the
    /// instance's placement region from IMDS. Cached once found.
    public func region() async throws -> String {
        if let known = state.withLock({ $0.region }) { return known }
        var region: String
        if let (configured, origin) = try await configuredRegion() {
            region = configured
            try Self.validateRegion(region, origin: origin)
        } else if AWSInstanceMetadata.isDisabled(environment) {
            throw Self.noRegion("IMDS is disabled by AWS_EC2_METADATA_DISABLED")
        } else {
            do {
                region = try await imds().region()
            } catch let error as CloudAuthError {
                throw Self.noRegion("the instance metadata did not say (\(error))")
            }
            try Self.validateRegion(region, origin: "IMDS placement/region")
        }
        state.withLock { $0.region = region }
        return region
    }

    /// The region from config, env or profile, and where it came from; nil when none sets it.
    private func configuredRegion() async throws -> (String, String)? {
        if let region = settings.region, !region.isEmpty { return (region, "aws.region (config or --region)") }
        if let region = value("AWS_REGION") { return (region, "AWS_REGION") }
        if let region = value("AWS_DEFAULT_REGION") { return (region, "AWS_DEFAULT_REGION") }
        let name = settings.profile ?? value("AWS_PROFILE") ?? "default"
        if let region = try await AWSSharedConfig.read(environment: environment).profiles[name]?["region"], !region.isEmpty {
            return (region, "profile \(name) region")
        }
        return nil
    }

    private static func noRegion(_ why: String) -> CloudAuthError {
        CloudAuthError(.configuration, source: "AWS region", "no region is configured and \(why)",
                       remedy: "set aws.region in the config, AWS_REGION, or --region")
    }

    /// Accepts names like `us-east-1`, `us-gov-west-1`, `eu-isoe-west-1`.
    static func validateRegion(_ region: String, origin: String) throws {
        let parts = region.split(separator: "-", omittingEmptySubsequences: false)
        let valid = region.count <= 40 && parts.count >= 3
            && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber) } }
            && parts.last!.allSatisfy(\.isNumber)
        guard valid else {
            throw CloudAuthError(.invalidInput, source: origin, "'\(region)' is not an AWS region name",
                                 remedy: "use a name like us-east-1")
        }
    }

    /// The explicitly configured STS endpoint (config, `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`).
    public var configuredSTSEndpoint: String? {
        settings.stsEndpoint.flatMap { $0.isEmpty ? nil : $0 } ?? value("AWS_ENDPOINT_URL_STS") ?? value("AWS_ENDPOINT_URL")
    }

    /// STS at the configured endpoint, else the regional one; without any region, the global
    /// endpoint signed for us-east-1 (as STS itself accepts).
    private func sts() async throws -> AWSSTS {
        let region: String
        do {
            region = try await self.region()
        } catch let error as CloudAuthError where error.code == .configuration {
            return AWSSTS(endpoint: configuredSTSEndpoint ?? "https://sts.amazonaws.com", region: "us-east-1", http: http)
        }
        return AWSSTS(endpoint: configuredSTSEndpoint ?? AWSSTS.regionalEndpoint(region: region), region: region, http: http)
    }

    /// The PKCS#7 instance identity document from IMDS, for Vault's aws ec2 login.
    public func instanceIdentityPKCS7() async throws -> String {
        try await imds().instanceIdentityPKCS7()
    }
}

extension VaultAWSLogin {
    /// The login payload signed with the chain's current credentials and region, sent to the
    /// chain's configured STS endpoint or else Vault's default.
    public static func payload(role: String, serverID: String?, chain: AWSCredentialChain, at date: Date) async throws -> [String: String] {
        let credentials = try await chain.credentials()
        return try payload(role: role, serverID: serverID, region: try await chain.region(),
                           stsEndpoint: chain.configuredSTSEndpoint, credentials: credentials, at: date)
    }
}
