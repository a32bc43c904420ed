import Foundation
import Synchronization

/// Which Google service account to use and where to reach it; mirrors the `gcp:` config section.
public struct GCPSettings: Sendable, Equatable {
    /// The metadata server's account: `default` or an email attached to the instance.
    public var serviceAccount: String
    /// A service-account key file (else `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server).
    public var keyFile: String?
    /// The metadata server as host[:port] (else `GCE_METADATA_HOST`, else `metadata.google.internal`).
    public var metadataHost: String?

    public init(serviceAccount: String = "default", keyFile: String? = nil, metadataHost: String? = nil) {
        self.serviceAccount = serviceAccount
        self.keyFile = keyFile
        self.metadataHost = metadataHost
    }
}

/// Google tokens for a service account, from a key file when one is configured
/// (`key_file` / `GOOGLE_APPLICATION_CREDENTIALS`), else from the GCE/GKE metadata server.
///
/// Access tokens are what Cloud SQL (IAM database authentication) takes as the password and
/// Memorystore for Redis takes as the AUTH password; identity tokens are what Vault's jwt/gcp auth
/// methods verify. Nothing is cached: each call asks the source.
public final class GCPIdentity: Sendable {
    /// Where tokens come from, decided once from settings and environment.
    public enum Source: Sendable, Equatable {
        case keyFile(path: String, origin: String)
        case metadataServer(host: String, serviceAccount: String)
    }

    public let source: Source
    private let http: any HTTPClient
    private let clock: @Sendable () -> Date
    /// The last key file parsed, with the bytes it came from: the file is read on every fetch (it
    /// may be rotated), but parsed again only when it changed (PEM parsing costs more than signing).
    private let parsedKey = Mutex<(contents: [UInt8], key: ServiceAccountKey)?>(nil)

    /// The scope asked for when none is given with a key file.
    public static let cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

    /// A service account's email as a URL path segment (metadata server, IAM Credentials):
    /// percent-encoded, `@` kept as Google's own clients send it.
    static func pathComponent(account: String) -> String {
        PercentEncoding.encode(account).replacingOccurrences(of: "%40", with: "@")
    }
    /// The metadata server's name inside Google Cloud.
    public static let defaultMetadataHost = "metadata.google.internal"

    public init(settings: GCPSettings, http: any HTTPClient, environment: [String: String],
                clock: @escaping @Sendable () -> Date = Date.init) {
        self.http = http
        self.clock = clock
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let keyFile = settings.keyFile {
            source = .keyFile(path: keyFile, origin: "gcp.key_file")
        } else if let keyFile = value("GOOGLE_APPLICATION_CREDENTIALS") {
            source = .keyFile(path: keyFile, origin: "env GOOGLE_APPLICATION_CREDENTIALS")
        } else {
            var host = settings.metadataHost ?? value("GCE_METADATA_HOST") ?? Self.defaultMetadataHost
            // Accept a URL too: the metadata server is always plain http.
            if let schemeEnd = host.range(of: "://") { host = String(host[schemeEnd.upperBound...]) }
            while host.hasSuffix("/") { host.removeLast() }
            source = .metadataServer(host: host, serviceAccount: settings.serviceAccount.isEmpty ? "default" : settings.serviceAccount)
        }
    }

    /// An OAuth access token for `scopes` (the key file's default: cloud-platform; the metadata
    /// server's default: the scopes the instance was granted).
    public func accessToken(scopes: [String] = []) async throws -> AccessToken {
        switch source {
        case let .keyFile(path, origin):
            let key = try await serviceAccountKey(path: path, origin: origin)
            return try await key.accessToken(scopes: scopes.isEmpty ? [Self.cloudPlatformScope] : scopes,
                                             http: http, now: clock())
        case let .metadataServer(host, account):
            return try await metadata(host: host).accessToken(account: account, scopes: scopes, now: clock())
        }
    }

    /// A Google-signed OIDC identity token whose `aud` is `audience`.
    public func identityToken(audience: String) async throws -> AccessToken {
        guard !audience.isEmpty else {
            throw CloudAuthError(.invalidInput, source: "gcp audience", "the audience is empty",
                                 remedy: "pass the audience the verifier expects, e.g. the Vault role's bound audience")
        }
        switch source {
        case let .keyFile(path, origin):
            let key = try await serviceAccountKey(path: path, origin: origin)
            return try await key.identityToken(audience: audience, http: http, now: clock())
        case let .metadataServer(host, account):
            return try await metadata(host: host).identityToken(account: account, audience: audience, now: clock())
        }
    }

    /// The service account's email.
    public func email() async throws -> String {
        switch source {
        case let .keyFile(path, origin):
            return try await serviceAccountKey(path: path, origin: origin).clientEmail
        case let .metadataServer(host, account):
            return try await metadata(host: host).email(account: account)
        }
    }

    /// The Cloud SQL IAM database user for a service account: its email without
    /// `.gserviceaccount.com` (`name@project.iam`). Other emails (users) are returned unchanged.
    public static func cloudSQLUser(email: String) -> String {
        let suffix = ".gserviceaccount.com"
        return email.hasSuffix(suffix) ? String(email.dropLast(suffix.count)) : email
    }

    private func metadata(host: String) -> MetadataServer { MetadataServer(host: host, http: http) }

    private func serviceAccountKey(path: String, origin: String) async throws -> ServiceAccountKey {
        let contents = try await ServiceAccountKey.read(path: path, origin: origin)
        if let cached = parsedKey.withLock({ $0 }), cached.contents == contents { return cached.key }
        let key = try ServiceAccountKey(json: contents, source: "\(path) (\(origin))")
        parsedKey.withLock { $0 = (contents, key) }
        return key
    }
}
