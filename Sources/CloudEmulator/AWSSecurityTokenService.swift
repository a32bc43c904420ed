import CloudAuth
import Foundation
import Synchronization

/// STS on the AWS listener at `/`, as the Query API answers it (form or query parameters in, XML
/// out): `GetCallerIdentity` and `AssumeRole` with their SigV4 signatures verified against the keys
/// this emulator issued (unknown, tampered, expired or stale signatures are refused with AWS's
/// error codes), and `AssumeRoleWithWebIdentity` for web identity tokens that the emulator signed
/// (its Kubernetes issuer's, as EKS projects them for IRSA).
extension CloudEmulator {
    /// Temporary keys the emulator handed out, and whose they are.
    struct IssuedAWSKey: Sendable {
        var accessKeyID: String
        var secretAccessKey: Secret
        var sessionToken: Secret
        /// Seconds since 1970.
        var expiresAt: Int
        /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`
        var arn: String
        /// `AROA...:SESSION`
        var userID: String
    }

    /// The audience EKS puts in the service-account tokens it projects for IAM roles.
    static let webIdentityAudience = "sts.amazonaws.com"
    private static let stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"

    func roleARN(_ role: String) -> String { "arn:aws:iam::\(configuration.awsAccountID):role/\(role)" }

    /// Issues temporary keys for a session of `role`, remembered for signature checks.
    func issueAWSKey(role: String, session: String, validity: Validity) -> IssuedAWSKey {
        let roleID = "AROA" + Encoding.hex(Digest.sha256(role).prefix(9)).uppercased().prefix(17)
        let key = IssuedAWSKey(
            accessKeyID: "ASIA" + Encoding.hex(Digest.randomBytes(8)).uppercased(),
            secretAccessKey: Secret(issueRandomSecret(.awsKey, expiresAt: validity.expiresAt)),
            sessionToken: Secret(issueRandomSecret(.awsKey, expiresAt: validity.expiresAt)),
            expiresAt: validity.expiresAt,
            arn: "arn:aws:sts::\(configuration.awsAccountID):assumed-role/\(role)/\(session)",
            userID: "\(roleID):\(session)")
        state.withLock { $0.awsKeys.insert(key.accessKeyID, key) }
        return key
    }

    /// The verifier STS and the token check use: it knows every key this emulator issued.
    var signatureVerifier: SigV4Verifier {
        SigV4Verifier { accessKeyID in
            self.state.withLock { $0.awsKeys[accessKeyID] }.map {
                SigV4Verifier.IssuedKey(secretAccessKey: $0.secretAccessKey, sessionToken: $0.sessionToken,
                                        expiresAt: Date(timeIntervalSince1970: TimeInterval($0.expiresAt)))
            }
        }
    }

    func securityTokenService(_ request: EmulatorRequest, expired: Bool) -> EmulatorResponse {
        // The body of a signed POST is covered by its hash; the query of a signed request is read
        // back from the verifier, exactly as it was signed.
        let form = request.method == "POST" ? request.form : []
        var parameters = request.query + form
        func parameter(_ name: String) -> String? { parameters.first { $0.name == name }?.value }
        guard let action = parameter("Action") else {
            return stsError(400, "MissingAction", "Missing Action")
        }
        if action == "AssumeRoleWithWebIdentity" {
            return assumeRoleWithWebIdentity(parameter, expired: expired)
        }
        guard ["GetCallerIdentity", "AssumeRole"].contains(action) else {
            return stsError(400, "InvalidAction", "Could not find operation \(action) for version \(parameter("Version") ?? "NO_VERSION_SPECIFIED")")
        }
        let caller: IssuedAWSKey
        switch signatureVerifier.verify(method: request.method, path: request.path, query: request.rawQuery,
                                        headers: request.headers, body: request.body, now: Date()) {
        case let .failure(rejection):
            return stsError(["IncompleteSignature", "RequestExpired"].contains(rejection.code) ? 400 : 403,
                            rejection.code, rejection.message)
        case let .success(signature):
            guard signature.service == "sts", let key = state.withLock({ $0.awsKeys[signature.accessKeyID] }) else {
                return stsError(403, "SignatureDoesNotMatch", "Credential should be scoped to correct service: 'sts'.")
            }
            caller = key
            parameters = signature.parameters + form
        }
        guard parameter("Action") == action else { return stsError(400, "MissingAction", "Missing Action") }
        if action == "GetCallerIdentity" {
            return stsResult(action, [
                ("Arn", caller.arn), ("UserId", caller.userID), ("Account", configuration.awsAccountID),
            ].map(xmlElement).joined())
        }
        guard let session = roleSession(parameter) else { return sessionNameError(parameter("RoleSessionName")) }
        guard let (role, duration) = roleAndDuration(parameter) else { return invalidRoleOrDuration(parameter) }
        guard role.account == configuration.awsAccountID else {
            return stsError(403, "AccessDenied", "User: \(caller.arn) is not authorized to perform: sts:AssumeRole on resource: \(parameter("RoleArn") ?? "")")
        }
        let key = issueAWSKey(role: role.name, session: session, validity: sessionValidity(duration, expired: expired))
        return stsResult(action, credentialsXML(key) + assumedRoleUserXML(key))
    }

    private func assumeRoleWithWebIdentity(_ parameter: (String) -> String?, expired: Bool) -> EmulatorResponse {
        guard let session = roleSession(parameter) else { return sessionNameError(parameter("RoleSessionName")) }
        guard let (role, duration) = roleAndDuration(parameter) else { return invalidRoleOrDuration(parameter) }
        guard let token = parameter("WebIdentityToken"), let identity = try? JWT.decode(token, source: "WebIdentityToken"),
              identity.hasValidSignature(key: signingKey) else {
            return stsError(400, "InvalidIdentityToken", "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements")
        }
        let now = Date()
        guard let expiry = identity.date("exp"), expiry > now else {
            let stamp = identity.date("exp").map { $0.formatted(.iso8601) } ?? "none"
            return stsError(400, "ExpiredTokenException", "Token expired: current date/time \(now.formatted(.iso8601)) must be before the expiration date/time \(stamp)")
        }
        guard identity.audiences.contains(Self.webIdentityAudience) else {
            return stsError(400, "InvalidIdentityToken", "Incorrect token audience")
        }
        guard role.account == configuration.awsAccountID else {
            return stsError(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
        }
        let key = issueAWSKey(role: role.name, session: session, validity: sessionValidity(duration, expired: expired))
        let provider = (identity.string("iss") ?? "").replacingOccurrences(of: "http://", with: "")
            .replacingOccurrences(of: "https://", with: "")
        return stsResult("AssumeRoleWithWebIdentity", [
            ("SubjectFromWebIdentityToken", identity.string("sub") ?? ""), ("Audience", Self.webIdentityAudience),
        ].map(xmlElement).joined() + assumedRoleUserXML(key) + credentialsXML(key) + xmlElement(("Provider", provider)))
    }

    /// Keys live for the requested duration, but never past the emulator's token lifetime (so that
    /// demos and tests see them rotate).
    private func sessionValidity(_ duration: Int, expired: Bool) -> Validity {
        Validity(lifetime: min(TimeInterval(duration), tokenLifetime), expired: expired)
    }

    private func roleSession(_ parameter: (String) -> String?) -> String? {
        guard let name = parameter("RoleSessionName"), (2...64).contains(name.count),
              name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_+=,.@-".contains($0)) }) else { return nil }
        return name
    }

    private func sessionNameError(_ name: String?) -> EmulatorResponse {
        guard let name else {
            return stsError(400, "ValidationError", "1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
        }
        return stsError(400, "ValidationError", "1 validation error detected: Value '\(name)' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]{2,64}")
    }

    /// The role named by `RoleArn` (`arn:aws:iam::ACCOUNT:role/[path/]NAME`) and `DurationSeconds` (900-43200, 3600 if absent).
    private func roleAndDuration(_ parameter: (String) -> String?) -> ((account: String, name: String), Int)? {
        guard let arn = parameter("RoleArn") else { return nil }
        let parts = arn.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "arn", parts[2] == "iam", parts[5].hasPrefix("role/"),
              let name = parts[5].split(separator: "/").last, parts[5].count > 5 else { return nil }
        let duration = parameter("DurationSeconds").map { Int($0) ?? -1 } ?? 3600
        guard (900...43_200).contains(duration) else { return nil }
        return ((String(parts[4]), String(name)), duration)
    }

    private func invalidRoleOrDuration(_ parameter: (String) -> String?) -> EmulatorResponse {
        guard let arn = parameter("RoleArn") else {
            return stsError(400, "ValidationError", "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
        }
        if let duration = parameter("DurationSeconds"), !(Int(duration).map { (900...43_200).contains($0) } ?? false) {
            return stsError(400, "ValidationError", "1 validation error detected: Value '\(duration)' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200")
        }
        return stsError(400, "ValidationError", "\(arn) is invalid")
    }

    private func credentialsXML(_ key: IssuedAWSKey) -> String {
        "<Credentials>" + [
            ("AccessKeyId", key.accessKeyID), ("SecretAccessKey", key.secretAccessKey.reveal()),
            ("SessionToken", key.sessionToken.reveal()), ("Expiration", Self.awsTime(key.expiresAt)),
        ].map(xmlElement).joined() + "</Credentials>"
    }

    private func assumedRoleUserXML(_ key: IssuedAWSKey) -> String {
        "<AssumedRoleUser>" + xmlElement(("AssumedRoleId", key.userID)) + xmlElement(("Arn", key.arn)) + "</AssumedRoleUser>"
    }

    private func xmlElement(_ element: (name: String, value: String)) -> String {
        "<\(element.name)>\(Self.xmlEscaped(element.value))</\(element.name)>"
    }

    static func xmlEscaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    private func stsResult(_ action: String, _ inner: String) -> EmulatorResponse {
        .text(200, """
            <\(action)Response xmlns="\(Self.stsNamespace)"><\(action)Result>\(inner)</\(action)Result>\
            <ResponseMetadata><RequestId>\(UUID().uuidString.lowercased())</RequestId></ResponseMetadata></\(action)Response>
            """, contentType: "text/xml")
    }

    /// AWS's Query API error document.
    private func stsError(_ status: Int, _ code: String, _ message: String) -> EmulatorResponse {
        .text(status, """
            <ErrorResponse xmlns="\(Self.stsNamespace)"><Error><Type>Sender</Type><Code>\(code)</Code>\
            <Message>\(Self.xmlEscaped(message))</Message></Error><RequestId>\(UUID().uuidString.lowercased())</RequestId></ErrorResponse>
            """, contentType: "text/xml")
    }
}
