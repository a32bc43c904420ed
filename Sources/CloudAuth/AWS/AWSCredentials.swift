import Foundation

/// An AWS access key pair, the session token that temporary keys carry, and when they expire.
public struct AWSCredentials: Sendable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: Secret
    /// Present for temporary credentials (STS, IMDS, containers).
    public var sessionToken: Secret?
    /// When the keys stop working; `nil` for long-term keys.
    public var expiration: Date?
    /// Where the keys came from: "environment", "web-identity", "container", "profile NAME",
    /// "imds", "assume-role", ...
    public var source: String

    public init(accessKeyID: String, secretAccessKey: Secret, sessionToken: Secret? = nil,
                expiration: Date? = nil, source: String) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
        self.source = source
    }

    /// The access key ID is not secret (it appears in every signed request); the rest is redacted.
    public var description: String {
        "AWSCredentials(\(accessKeyID), from \(source)"
            + (expiration.map { ", expires \(Timestamp.format($0))" } ?? "") + ")"
    }
}

/// The `aws:` section of the agent's config. Every field is optional; unset, the standard AWS
/// environment variables and endpoints apply.
public struct AWSSettings: Sendable, Equatable {
    /// Signing region for tokens and STS; otherwise `AWS_REGION`, `AWS_DEFAULT_REGION`, the
    /// profile's `region`, then the instance's placement region from IMDS.
    public var region: String?
    /// A role to assume (signed `sts:AssumeRole`) with whatever credentials the chain found.
    public var assumeRoleARN: String?
    /// STS endpoint URL; otherwise `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, then the regional
    /// `https://sts.REGION.amazonaws.com`.
    public var stsEndpoint: String?
    /// Instance metadata endpoint; otherwise `AWS_EC2_METADATA_SERVICE_ENDPOINT`, then
    /// `http://169.254.169.254`.
    public var imdsEndpoint: String?
    /// Shared config profile; otherwise `AWS_PROFILE`, then `default`.
    public var profile: String?

    public init(region: String? = nil, assumeRoleARN: String? = nil, stsEndpoint: String? = nil,
                imdsEndpoint: String? = nil, profile: String? = nil) {
        self.region = region
        self.assumeRoleARN = assumeRoleARN
        self.stsEndpoint = stsEndpoint
        self.imdsEndpoint = imdsEndpoint
        self.profile = profile
    }
}
