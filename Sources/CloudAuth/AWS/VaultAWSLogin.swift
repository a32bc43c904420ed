import Foundation

/// The login data of Vault's (and OpenBao's) AWS auth method, `iam` type: a signed
/// `sts:GetCallerIdentity` request that Vault replays to STS to learn who is logging in.
///
/// Matches what `vault login -method=aws` sends (`GenerateLoginData` in Vault's
/// `builtin/credential/aws/cli.go`): a POST of `Action=GetCallerIdentity&Version=2011-06-15`,
/// the optional `X-Vault-AWS-IAM-Server-ID` header signed with the rest, and the headers as a
/// JSON map of Go-canonical names to value lists.
public enum VaultAWSLogin {
    /// The request body Vault expects.
    public static let body = "Action=GetCallerIdentity&Version=2011-06-15"
    /// Vault's default STS endpoint (its `sts_endpoint` setting and the CLI's default).
    public static let defaultSTSEndpoint = "https://sts.amazonaws.com"

    /// The JSON fields of `POST /v1/auth/{mount}/login`: `iam_http_request_method`,
    /// `iam_request_url`, `iam_request_body`, `iam_request_headers` (each base64) and `role`.
    ///
    /// - Parameters:
    ///   - serverID: the value of `X-Vault-AWS-IAM-Server-ID` when the Vault mount requires one.
    ///   - region: the signing region; Vault's `sts_region` must match when it is set.
    ///   - stsEndpoint: where Vault will send the request; `https://sts.amazonaws.com` by default.
    /// The result authorises a login for a few minutes: treat it as a secret.
    public static func payload(role: String, serverID: String?, region: String, stsEndpoint: String?,
                               credentials: AWSCredentials, at date: Date) throws -> [String: String] {
        var url = try EndpointURL(parsing: stsEndpoint ?? defaultSTSEndpoint)
        url.query = nil
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
        if let serverID, !serverID.isEmpty { headers.add("X-Vault-AWS-IAM-Server-ID", serverID) }
        let signer = SigV4Signer(credentials: credentials, region: region, service: "sts")
        let signed = signer.sign(SigV4Request(method: "POST", url: url, headers: headers, body: Array(body.utf8)), at: date)

        var headerMap: [String: [String]] = [:]
        for (name, value) in signed.headers.fields {
            headerMap[goCanonicalHeaderName(name), default: []].append(value)
        }
        let headerJSON = try JSONSerialization.data(withJSONObject: headerMap, options: [.sortedKeys, .withoutEscapingSlashes])
        return [
            "iam_http_request_method": "POST",
            "iam_request_url": Encoding.base64(url.string),
            "iam_request_body": Encoding.base64(body),
            "iam_request_headers": Encoding.base64(Array(headerJSON)),
            "role": role,
        ]
    }

    /// `x-vault-aws-iam-server-id` -> `X-Vault-Aws-Iam-Server-Id`, as Go's
    /// `http.CanonicalHeaderKey` writes it; Vault looks `Authorization` up by that exact name.
    static func goCanonicalHeaderName(_ name: String) -> String {
        name.lowercased().split(separator: "-", omittingEmptySubsequences: false)
            .map { $0.prefix(1).uppercased() + $0.dropFirst() }
            .joined(separator: "-")
    }
}
