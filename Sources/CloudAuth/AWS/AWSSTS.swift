import Foundation

/// The STS calls the chain makes: `AssumeRole` (signed with existing keys),
/// `AssumeRoleWithWebIdentity` (unsigned; the web identity token is the proof), and
/// `GetCallerIdentity` (signed; whom the keys belong to).
struct AWSSTS: Sendable {
    /// Where requests go, e.g. `https://sts.us-east-1.amazonaws.com`.
    let endpoint: String
    /// The signing region.
    let region: String
    let http: any HTTPClient

    /// `https://sts.REGION.amazonaws.com` (`.amazonaws.com.cn` in China).
    static func regionalEndpoint(region: String) -> String {
        "https://sts.\(region).amazonaws.com" + (region.hasPrefix("cn-") ? ".cn" : "")
    }

    func assumeRole(roleARN: String, sessionName: String, externalID: String? = nil, durationSeconds: Int? = nil,
                    with credentials: AWSCredentials, at date: Date) async throws -> AWSCredentials {
        var parameters = [("Action", "AssumeRole"), ("Version", "2011-06-15"),
                          ("RoleArn", roleARN), ("RoleSessionName", sessionName)]
        if let externalID { parameters.append(("ExternalId", externalID)) }
        if let durationSeconds { parameters.append(("DurationSeconds", String(durationSeconds))) }
        return try await call("AssumeRole", parameters: parameters, signWith: credentials, at: date,
                              label: "assume-role \(roleARN)")
    }

    func assumeRoleWithWebIdentity(roleARN: String, sessionName: String, token: Secret,
                                   at date: Date) async throws -> AWSCredentials {
        let parameters = [("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"),
                          ("RoleArn", roleARN), ("RoleSessionName", sessionName),
                          ("WebIdentityToken", token.reveal())]
        return try await call("AssumeRoleWithWebIdentity", parameters: parameters, signWith: nil, at: date,
                              label: "web-identity \(roleARN)")
    }

    func callerIdentity(with credentials: AWSCredentials, at date: Date) async throws -> AWSCallerIdentity {
        let (xml, source) = try await send("GetCallerIdentity", parameters: [("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
                                           signWith: credentials, at: date)
        guard let arn = AWSResponseParsing.xmlText(xml, "Arn"), !arn.isEmpty,
              let account = AWSResponseParsing.xmlText(xml, "Account"), !account.isEmpty else {
            throw CloudAuthError(.malformedResponse, source: source, "the answer lacks Arn and Account")
        }
        return AWSCallerIdentity(arn: arn, account: account)
    }

    private func call(_ action: String, parameters: [(String, String)], signWith credentials: AWSCredentials?,
                      at date: Date, label: String) async throws -> AWSCredentials {
        let (xml, source) = try await send(action, parameters: parameters, signWith: credentials, at: date)
        guard let accessKey = AWSResponseParsing.xmlText(xml, "AccessKeyId"), !accessKey.isEmpty,
              let secret = AWSResponseParsing.xmlText(xml, "SecretAccessKey"), !secret.isEmpty,
              let token = AWSResponseParsing.xmlText(xml, "SessionToken"), !token.isEmpty,
              let expirationText = AWSResponseParsing.xmlText(xml, "Expiration") else {
            throw CloudAuthError(.malformedResponse, source: source,
                                 "the answer lacks Credentials (AccessKeyId, SecretAccessKey, SessionToken, Expiration)")
        }
        guard let expiration = Timestamp.parse(expirationText) else {
            throw CloudAuthError(.malformedResponse, source: source, "Expiration '\(UpstreamText.excerpt(expirationText))' is not an ISO 8601 time")
        }
        return AWSCredentials(accessKeyID: accessKey, secretAccessKey: Secret(secret), sessionToken: Secret(token),
                              expiration: expiration, source: label)
    }

    /// Posts `action` and returns the body of STS's successful answer, with the endpoint named as
    /// errors name it; an error answer is thrown with STS's code and a masked message.
    private func send(_ action: String, parameters: [(String, String)], signWith credentials: AWSCredentials?,
                      at date: Date) async throws -> (xml: String, source: String) {
        var url = try EndpointURL(parsing: endpoint)
        if url.path.isEmpty { url.path = "/" }
        url.query = nil
        let source = "STS \(action) \(url.redacted)"
        let body = Array(parameters.map { PercentEncoding.encode($0.0) + "=" + PercentEncoding.encode($0.1) }
            .joined(separator: "&").utf8)
        var request = SigV4Request(method: "POST", url: url,
                                   headers: ["Content-Type": "application/x-www-form-urlencoded; charset=utf-8"],
                                   body: body)
        if let credentials {
            request = SigV4Signer(credentials: credentials, region: region, service: "sts").sign(request, at: date)
        }
        var headers = request.headers
        headers.replace("Host", url.hostHeader)
        let response = try await http.execute(HTTPRequest(method: "POST", url: url.string, headers: headers,
                                                          body: body, timeouts: .standard))
        let xml = response.bodyText
        guard response.isSuccess else {
            // STS's documented <Code> and a masked excerpt of its <Message>, never the body.
            let code = UpstreamText.code(AWSResponseParsing.xmlText(xml, "Code"))
            let message = AWSResponseParsing.xmlText(xml, "Message").map(UpstreamText.excerpt)
            let detail = code.map { ": \($0)" + (message.map { " - \($0)" } ?? "") } ?? ""
            throw CloudAuthError(response.status >= 500 ? .unavailable : .rejected, source: source,
                                 "STS answered HTTP \(response.status)\(detail)",
                                 remedy: response.status == 403 ? "check the role's trust policy and the caller's permissions" : nil)
        }
        return (xml, source)
    }
}

/// Whom a set of AWS keys belongs to, as STS `GetCallerIdentity` says (no secret).
public struct AWSCallerIdentity: Sendable, Equatable {
    /// The user's or assumed role session's ARN, e.g. `arn:aws:sts::123456789012:assumed-role/app/i-0abc`.
    public var arn: String
    /// The account number.
    public var account: String
}
