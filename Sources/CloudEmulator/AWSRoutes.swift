import CloudAuth
import Foundation

/// The AWS listener: EC2 instance metadata (IMDSv2 only: every GET needs a session token from
/// `PUT /latest/api/token`, as on an instance that requires IMDSv2), the container credentials
/// endpoint that ECS and EKS Pod Identity run, with the JSON shapes AWS documents, and STS at `/`
/// (see `AWSSecurityTokenService.swift`). Every key it hands out is remembered, so STS can verify
/// the signatures made with it.
extension CloudEmulator {
    static let containerCredentialsPath = "/v2/credentials/credagent-task"
    private static let credentialsPrefix = "/latest/meta-data/iam/security-credentials/"

    func routeAWS(_ request: EmulatorRequest) -> EmulatorResponse {
        if request.method == "PUT", request.path == "/latest/api/token" {
            return respond(.awsIMDSToken) { _ in imdsSessionToken(request) }
        }
        if request.path == "/" {
            return respond(.awsSTS) { securityTokenService(request, expired: $0) }
        }
        if request.method == "GET", request.path == Self.containerCredentialsPath {
            return respond(.awsContainerCredentials) { expired in
                guard request.headers["authorization"] == configuration.awsContainerAuthorization.reveal() else {
                    return .json(403, ["code": "AccessDeniedException", "message": "Authorization header is missing or invalid"])
                }
                var body = credentialsJSON(issueAWSKey(role: configuration.awsRoleName, session: "credagent-task",
                                                       validity: validity(expired: expired)))
                body["RoleArn"] = roleARN(configuration.awsRoleName)
                return .json(200, body)
            }
        }
        guard request.method == "GET", request.path.hasPrefix("/latest/") else {
            return .text(404, "Not Found")
        }
        // IMDSv2: a GET without a valid session token is refused, never answered v1-style.
        guard let token = request.headers["x-aws-ec2-metadata-token"], let expiry = expiryOfIssued(token, as: .imdsSession),
              expiry > Int(Date().timeIntervalSince1970) else {
            return .text(401, "Unauthorized")
        }
        switch request.path {
        case Self.credentialsPrefix:
            return .text(200, configuration.awsRoleName)
        case Self.credentialsPrefix + configuration.awsRoleName:
            return respond(.awsIMDSCredentials) { expired in
                var body = credentialsJSON(issueAWSKey(role: configuration.awsRoleName, session: Self.instanceID,
                                                       validity: validity(expired: expired)))
                body["Code"] = "Success"
                body["Type"] = "AWS-HMAC"
                body["LastUpdated"] = Self.awsTime(Int(Date().timeIntervalSince1970))
                return .json(200, body)
            }
        case "/latest/meta-data/placement/region":
            return .text(200, configuration.awsRegion)
        case "/latest/dynamic/instance-identity/document":
            return .json(200, ["accountId": configuration.awsAccountID, "region": configuration.awsRegion,
                               "instanceId": Self.instanceID, "architecture": "x86_64"])
        case "/latest/dynamic/instance-identity/pkcs7":
            // The shape of AWS's answer (base64 in 64-column lines); not a real PKCS#7 signature.
            let document = Encoding.base64(Array("credagent emulator instance identity \(configuration.awsAccountID)".utf8))
            return .text(200, stride(from: 0, to: document.count, by: 64).map {
                let start = document.index(document.startIndex, offsetBy: $0)
                return String(document[start..<(document.index(start, offsetBy: 64, limitedBy: document.endIndex) ?? document.endIndex)])
            }.joined(separator: "\n"))
        default:
            return .text(404, "Not Found")
        }
    }

    static let instanceID = "i-0c0ffee0c0ffee000"

    private func imdsSessionToken(_ request: EmulatorRequest) -> EmulatorResponse {
        guard let ttl = request.headers["x-aws-ec2-metadata-token-ttl-seconds"].flatMap(Int.init), (1...21_600).contains(ttl) else {
            return .text(400, "Bad Request")
        }
        return .text(200, issueRandomSecret(.imdsSession, expiresAt: Int(Date().timeIntervalSince1970) + ttl))
    }

    /// Temporary keys in the JSON shape of IMDS and the container endpoint.
    private func credentialsJSON(_ key: IssuedAWSKey) -> [String: any Sendable] {
        [
            "AccessKeyId": key.accessKeyID, "SecretAccessKey": key.secretAccessKey.reveal(),
            "Token": key.sessionToken.reveal(), "Expiration": Self.awsTime(key.expiresAt),
        ]
    }

    /// `2026-11-22T10:15:00Z`, the form AWS's credential endpoints and STS use.
    static func awsTime(_ seconds: Int) -> String {
        Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601)
    }

    /// A random secret, remembered as issued as `kind`.
    func issueRandomSecret(_ kind: IssuedKind, expiresAt: Int) -> String {
        let secret = Encoding.base64(Digest.randomBytes(30))
        remember(secret, kind: kind, expiresAt: expiresAt)
        return secret
    }
}
