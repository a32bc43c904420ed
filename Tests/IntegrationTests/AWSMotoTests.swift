import CloudAuth
import Foundation
import Testing

/// The AWS credential chain and the Vault AWS login payload against moto's server, which checks
/// SigV4 signatures against its IAM (scripts/peers/moto).
@Suite(.enabled(if: Peers.moto != nil, "CREDAGENT_TEST_MOTO is not set: run scripts/test"))
struct AWSMotoTests {
    static var moto: String { Peers.moto ?? "" }
    static var openMoto: String? { Peers.env("CREDAGENT_TEST_MOTO_OPEN") }
    static var userKeys: AWSCredentials {
        AWSCredentials(accessKeyID: Peers.env("CREDAGENT_TEST_MOTO_ACCESS_KEY_ID") ?? "",
                       secretAccessKey: Secret(Peers.env("CREDAGENT_TEST_MOTO_SECRET_ACCESS_KEY") ?? ""),
                       source: "test")
    }
    static let roleARN = "arn:aws:iam::123456789012:role/credagent-test"

    static func bareEnvironment() throws -> [String: String] {
        let home = try Peers.scratchDirectory("aws-home")
        return ["HOME": home, "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1"]
    }

    static func chain(_ environment: [String: String], settings: AWSSettings = AWSSettings()) -> AWSCredentialChain {
        AWSCredentialChain(settings: settings, http: CurlHTTPClient(), environment: environment)
    }

    /// Sends the request a Vault login payload describes, as Vault's server would.
    static func replay(_ payload: [String: String], body: String? = nil,
                       editHeaders: (inout [String: [String]]) -> Void = { _ in }) async throws -> HTTPResponse {
        func decoded(_ field: String) throws -> [UInt8] {
            let text = try #require(payload[field])
            return try #require(Encoding.fromBase64(text))
        }
        let url = String(decoding: try decoded("iam_request_url"), as: UTF8.self)
        var headerMap = try #require(try JSONSerialization.jsonObject(with: Data(try decoded("iam_request_headers"))) as? [String: [String]])
        editHeaders(&headerMap)
        var headers = HTTPHeaders()
        for (name, values) in headerMap { for value in values { headers.add(name, value) } }
        let requestBody = try body.map { Array($0.utf8) } ?? decoded("iam_request_body")
        return try await CurlHTTPClient().execute(HTTPRequest(method: try #require(payload["iam_http_request_method"]),
                                                              url: url, headers: headers, body: requestBody))
    }

    // MARK: Chain sources

    @Test("IMDSv2 against moto's instance metadata: role credentials and placement region")
    func instanceMetadata() async throws {
        var env = try Self.bareEnvironment()
        env.removeValue(forKey: "AWS_EC2_METADATA_DISABLED")
        env.removeValue(forKey: "AWS_REGION")
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = Self.moto
        let chain = Self.chain(env)
        let credentials = try await chain.credentials()
        #expect(credentials.source == "imds")
        #expect(credentials.accessKeyID == "test-key")
        #expect(credentials.sessionToken?.reveal() == "test-session-token")
        let remaining = try #require(credentials.expiration).timeIntervalSinceNow
        #expect(remaining > 3600 && remaining <= 86_400)
        #expect(try await chain.region() == "us-east-1")
    }

    @Test("assume_role_arn on top of environment keys: a signed sts:AssumeRole that moto accepts")
    func assumeRole() async throws {
        var env = try Self.bareEnvironment()
        env["AWS_ACCESS_KEY_ID"] = Self.userKeys.accessKeyID
        env["AWS_SECRET_ACCESS_KEY"] = Self.userKeys.secretAccessKey.reveal()
        env["AWS_ENDPOINT_URL_STS"] = Self.moto
        let credentials = try await Self.chain(env, settings: AWSSettings(assumeRoleARN: Self.roleARN)).credentials()
        #expect(credentials.source == "assume-role \(Self.roleARN)")
        #expect(credentials.accessKeyID.hasPrefix("ASIA"))
        #expect(credentials.sessionToken != nil)
        let remaining = try #require(credentials.expiration).timeIntervalSinceNow
        #expect(remaining > 3000 && remaining <= 3600)

        // The assumed keys work: moto accepts a GetCallerIdentity signed with them.
        let payload = try VaultAWSLogin.payload(role: "r", serverID: nil, region: "us-east-1", stsEndpoint: Self.moto,
                                                credentials: credentials, at: Date())
        let response = try await Self.replay(payload)
        #expect(response.status == 200)
        #expect(response.bodyText.contains("assumed-role/credagent-test/"))
    }

    @Test("a wrong secret: STS's ErrorResponse code and HTTP status surface in the error")
    func assumeRoleRejected() async throws {
        var env = try Self.bareEnvironment()
        env["AWS_ACCESS_KEY_ID"] = Self.userKeys.accessKeyID
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        env["AWS_ENDPOINT_URL"] = Self.moto
        do {
            _ = try await Self.chain(env, settings: AWSSettings(assumeRoleARN: Self.roleARN)).credentials()
            Issue.record("moto accepted a wrong signature")
        } catch let error as CloudAuthError {
            #expect(error.code == .rejected)
            #expect(error.source == "STS AssumeRole \(Self.moto)/")
            #expect(error.message.contains("HTTP 403: SignatureDoesNotMatch"))
            #expect(!error.description.contains("not-the-secret"))
        }
    }

    @Test("profile with role_arn and source_profile: one hop through moto STS")
    func profileAssumeRole() async throws {
        var env = try Self.bareEnvironment()
        let home = env["HOME"]!
        try FileManager.default.createDirectory(atPath: home + "/.aws", withIntermediateDirectories: true)
        try """
        [base]
        aws_access_key_id = \(Self.userKeys.accessKeyID)
        aws_secret_access_key = \(Self.userKeys.secretAccessKey.reveal())
        """.write(toFile: home + "/.aws/credentials", atomically: true, encoding: .utf8)
        try """
        [profile app]
        role_arn = \(Self.roleARN)
        source_profile = base
        role_session_name = credagent-profile
        region = eu-west-1
        """.write(toFile: home + "/.aws/config", atomically: true, encoding: .utf8)
        env.removeValue(forKey: "AWS_REGION")
        env["AWS_PROFILE"] = "app"
        env["AWS_ENDPOINT_URL_STS"] = Self.moto
        let chain = Self.chain(env)
        let credentials = try await chain.credentials()
        #expect(credentials.source == "profile app (assume-role \(Self.roleARN))")
        #expect(try await chain.region() == "eu-west-1")
        let payload = try VaultAWSLogin.payload(role: "r", serverID: nil, region: "eu-west-1", stsEndpoint: Self.moto,
                                                credentials: credentials, at: Date())
        let response = try await Self.replay(payload)
        #expect(response.status == 200)
        #expect(response.bodyText.contains("assumed-role/credagent-test/credagent-profile"))
    }

    @Test("web identity: the token file is read and exchanged with sts:AssumeRoleWithWebIdentity")
    func webIdentity() async throws {
        let openMoto = try #require(Self.openMoto, "CREDAGENT_TEST_MOTO_OPEN is not set")
        var env = try Self.bareEnvironment()
        let tokenFile = env["HOME"]! + "/web-identity-token"
        try "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a29uZyJ9.c2ln\n"
            .write(toFile: tokenFile, atomically: true, encoding: .utf8)
        env["AWS_WEB_IDENTITY_TOKEN_FILE"] = tokenFile
        env["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/web"
        env["AWS_ROLE_SESSION_NAME"] = "kong-pod"
        env["AWS_ENDPOINT_URL_STS"] = openMoto
        let credentials = try await Self.chain(env).credentials()
        #expect(credentials.source == "web-identity arn:aws:iam::123456789012:role/web")
        #expect(credentials.sessionToken != nil)
        #expect(try #require(credentials.expiration) > Date())
    }

    // MARK: Vault login payload

    @Test("the Vault AWS login request replays to STS: accepted as is, refused when tampered with")
    func vaultPayloadReplay() async throws {
        let payload = try VaultAWSLogin.payload(role: "kong", serverID: "vault.example.com", region: "us-east-1",
                                                stsEndpoint: Self.moto, credentials: Self.userKeys, at: Date())
        #expect(payload["role"] == "kong")
        #expect(payload["iam_http_request_method"] == "POST")
        #expect(Encoding.fromBase64(payload["iam_request_body"]!) == Array(VaultAWSLogin.body.utf8))

        let accepted = try await Self.replay(payload)
        #expect(accepted.status == 200)
        #expect(accepted.bodyText.contains("arn:aws:iam::123456789012:user/credagent-test"))

        let tamperedBody = try await Self.replay(payload, body: "Action=GetCallerIdentity&Version=2011-06-16")
        #expect(tamperedBody.status == 403)
        #expect(tamperedBody.bodyText.contains("SignatureDoesNotMatch"))

        let wrongSignature = try await Self.replay(payload) { headers in
            let authorization = headers["Authorization"]![0]
            let flipped = authorization.last == "0" ? "1" : "0"
            headers["Authorization"] = [String(authorization.dropLast()) + flipped]
        }
        #expect(wrongSignature.status == 403)

        let otherServerID = try await Self.replay(payload) { headers in
            headers["X-Vault-Aws-Iam-Server-Id"] = ["attacker.example.com"]
        }
        #expect(otherServerID.status == 403, "the server ID header must be signed")
    }
}
