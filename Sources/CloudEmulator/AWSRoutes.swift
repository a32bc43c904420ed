import CloudAuth
import Foundation

/// The AWS listener: EC2 instance metadata (IMDSv2 only: every GET needs a session token from
/// `PUT /latest/api/token`, as on an instance that requires IMDSv2) and the container credentials
/// endpoint that ECS and EKS Pod Identity run, with the JSON shapes AWS documents.
extension CloudEmulator {
    static let containerCredentialsPath = "/v2/credentials/credagent-task"
    private static let credentialsPrefix = "/latest/meta-data/iam/security-credentials/"

    func routeAWS(_ request: EmulatorRequest) -> EmulatorResponse {
        if request.method == "PUT", request.path == "/latest/api/token" {
            return respond(.awsIMDSToken) { _ in imdsSessionToken(request) }
        }
        if request.method == "GET", request.path == Self.containerCredentialsPath {
            return respond(.awsContainerCredentials) { expired in
                guard request.headers["authorization"] == configuration.awsContainerAuthorization.reveal() else {
                    return .json(403, ["code": "AccessDeniedException", "message": "Authorization header is missing or invalid"])
                }
                var body = credentials(expired: expired)
                body["RoleArn"] = "arn:aws:iam::\(configuration.awsAccountID):role/\(configuration.awsRoleName)"
                return .json(200, body)
            }
        }
        guard request.method == "GET", request.path.hasPrefix("/latest/") else {
            return .text(404, "Not Found")
        }
        // IMDSv2: a GET without a valid session token is refused, never answered v1-style.
        guard let token = request.headers["x-aws-ec2-metadata-token"], wasIssued(token) else {
            return .text(401, "Unauthorized")
        }
        switch request.path {
        case Self.credentialsPrefix:
            return .text(200, configuration.awsRoleName)
        case Self.credentialsPrefix + configuration.awsRoleName:
            return respond(.awsIMDSCredentials) { expired in
                var body = credentials(expired: expired)
                body["Code"] = "Success"
                body["Type"] = "AWS-HMAC"
                body["LastUpdated"] = Self.awsTime(Date())
                return .json(200, body)
            }
        case "/latest/meta-data/placement/region":
            return .text(200, configuration.awsRegion)
        case "/latest/dynamic/instance-identity/document":
            return .json(200, ["accountId": configuration.awsAccountID, "region": configuration.awsRegion,
                               "instanceId": "i-0c0ffee0c0ffee000", "architecture": "x86_64"])
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

    private func imdsSessionToken(_ request: EmulatorRequest) -> EmulatorResponse {
        guard let ttl = request.headers["x-aws-ec2-metadata-token-ttl-seconds"].flatMap(Int.init), (1...21_600).contains(ttl) else {
            return .text(400, "Bad Request")
        }
        return .text(200, issueRandomSecret())
    }

    /// Temporary keys in the documented JSON shape; the secret and session token are remembered as
    /// issued, so tests can ask ``wasIssued(_:)`` about them.
    private func credentials(expired: Bool) -> [String: any Sendable] {
        let validity = validity(expired: expired)
        return [
            "AccessKeyId": "ASIA" + Encoding.hex(Digest.randomBytes(8)).uppercased(),
            "SecretAccessKey": issueRandomSecret(),
            "Token": issueRandomSecret(),
            "Expiration": Self.awsTime(Date(timeIntervalSince1970: TimeInterval(validity.expiresAt))),
        ]
    }

    /// `2026-11-22T10:15:00Z`, the form AWS's credential endpoints use.
    private static func awsTime(_ date: Date) -> String { date.formatted(.iso8601) }

    /// A random secret, remembered as issued.
    private func issueRandomSecret() -> String {
        let secret = Encoding.base64(Digest.randomBytes(30))
        remember(secret)
        return secret
    }
}
