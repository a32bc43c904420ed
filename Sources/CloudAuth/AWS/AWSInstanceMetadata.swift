import Foundation

/// The EC2 instance metadata service, IMDSv2 only: every read carries a session token from
/// `PUT /latest/api/token`. When that PUT fails the read fails; there is no IMDSv1 fallback.
struct AWSInstanceMetadata: Sendable {
    static let defaultEndpoint = "http://169.254.169.254"
    static let defaultIPv6Endpoint = "http://[fd00:ec2::254]"
    /// Seconds the session token is asked to live; it is used for one credential read.
    static let tokenTTL = 21_600

    /// Base URL without a trailing slash.
    let endpoint: String
    let http: any HTTPClient

    /// The endpoint: `imdsEndpoint` from config, else `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else
    /// the IPv4 (or, with `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`, IPv6) link-local address.
    static func endpoint(settings: AWSSettings, environment: [String: String]) -> String {
        let chosen = settings.imdsEndpoint ?? environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"]?.lowercased() == "ipv6" ? defaultIPv6Endpoint : defaultEndpoint)
        return chosen.hasSuffix("/") ? String(chosen.dropLast()) : chosen
    }

    /// Whether `AWS_EC2_METADATA_DISABLED` turns IMDS off.
    static func isDisabled(_ environment: [String: String]) -> Bool {
        environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true"
    }

    /// The role credentials of the instance profile.
    func credentials() async throws -> AWSCredentials {
        let token = try await sessionToken()
        let listing = try await get("/latest/meta-data/iam/security-credentials/", token: token,
                                    notFound: "no IAM role is attached to this instance")
        guard let role = listing.split(whereSeparator: \.isNewline).first.map(String.init), !role.isEmpty else {
            throw CloudAuthError(.malformedResponse, source: "\(endpoint)/latest/meta-data/iam/security-credentials/",
                                 "the role listing is empty", remedy: "attach an instance profile with a role")
        }
        let path = "/latest/meta-data/iam/security-credentials/\(role)"
        let body = try await get(path, token: token, notFound: "the role '\(role)' has no credentials")
        return try AWSResponseParsing.credentialJSON(Array(body.utf8), source: "IMDS \(endpoint)\(path)", label: "imds")
    }

    /// The region the instance runs in.
    func region() async throws -> String {
        let token = try await sessionToken()
        return try await get("/latest/meta-data/placement/region", token: token, notFound: "the placement region is not published")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The PKCS#7-signed instance identity document (Vault's aws ec2 login), base64 without line breaks.
    func instanceIdentityPKCS7() async throws -> String {
        let token = try await sessionToken()
        return try await get("/latest/dynamic/instance-identity/pkcs7", token: token,
                             notFound: "the instance identity document is not published")
            .filter { !$0.isWhitespace }
    }

    private func sessionToken() async throws -> Secret {
        let url = endpoint + "/latest/api/token"
        let response = try await http.execute(HTTPRequest(
            method: "PUT", url: url, headers: ["X-aws-ec2-metadata-token-ttl-seconds": String(Self.tokenTTL)],
            timeouts: .metadata, maxResponseBytes: 4096))
        guard response.status == 200, !response.body.isEmpty else {
            throw CloudAuthError(response.status == 403 ? .rejected : .unavailable, source: "IMDS PUT \(url)",
                                 "the IMDSv2 session token request answered HTTP \(response.status); IMDSv1 is not used",
                                 remedy: "allow IMDSv2 on the instance (and a hop limit of 2 or more inside containers)")
        }
        return Secret(response.bodyText)
    }

    private func get(_ path: String, token: Secret, notFound: String) async throws -> String {
        let url = endpoint + path
        let response = try await http.execute(HTTPRequest(
            method: "GET", url: url, headers: ["X-aws-ec2-metadata-token": token.reveal()],
            timeouts: .metadata, maxResponseBytes: 64 * 1024))
        switch response.status {
        case 200: return response.bodyText
        case 404: throw CloudAuthError(.configuration, source: "IMDS \(url)", notFound)
        default:
            throw CloudAuthError(response.status >= 500 ? .unavailable : .rejected, source: "IMDS \(url)",
                                 "answered HTTP \(response.status)")
        }
    }
}
