import CloudAuth
import Foundation
import Testing

/// VaultClient and the AWS IAM login against a stub Vault that records what it receives and
/// answers with what a real Vault answers in failure cases (OpenBao covers the success paths).
struct VaultWireTests {
    /// A stub Vault that gives every request the same JSON answer.
    static func vault(_ status: Int, _ body: String) async throws -> LoopbackHTTPServer {
        try await HTTPClientTests.server(.init(status, body, headers: ["Content-Type": "application/json"]))
    }

    func client(_ server: LoopbackHTTPServer, namespace: String? = nil) -> VaultClient {
        VaultClient(endpoint: VaultEndpoint(address: server.url, namespace: namespace), http: CurlHTTPClient())
    }

    @Test func awsIAMLoginHasTheExactShapeVaultExpects() async throws {
        let server = try await Self.vault(200, #"{"auth":{"client_token":"hvs.x","accessor":"a","policies":["default"],"lease_duration":60,"renewable":true}}"#)
        let chain = AWSCredentialChain(settings: AWSSettings(region: "eu-west-1"), http: CurlHTTPClient(), environment: [
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ])
        let login = try VaultLogin(method: .awsIAM, role: "gateway", serverID: "vault.internal", identity: .aws(chain),
                                   http: CurlHTTPClient(), environment: [:])
        let token = try await client(server, namespace: "team-a").login(mount: "aws", payload: try await login.payload(now: Date()))
        #expect(token.leaseDuration == 60)

        let request = try #require(server.requests.first)
        #expect(request.method == "POST")
        #expect(request.path == "/v1/auth/aws/login")
        #expect(request.headers["x-vault-namespace"] == "team-a")
        let body = request.body
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: String])
        #expect(Set(json.keys) == ["role", "iam_http_request_method", "iam_request_url", "iam_request_body", "iam_request_headers"])
        #expect(json["role"] == "gateway")
        #expect(json["iam_http_request_method"] == "POST")
        func decoded(_ key: String) -> String { String(decoding: Encoding.fromBase64(json[key] ?? "") ?? [], as: UTF8.self) }
        #expect(decoded("iam_request_body") == "Action=GetCallerIdentity&Version=2011-06-15")
        #expect(decoded("iam_request_url").hasPrefix("https://sts."))
        let headers = try #require(try JSONSerialization.jsonObject(with: Data(decoded("iam_request_headers").utf8)) as? [String: [String]])
        // Go canonicalises header names, as Vault's own client sends them.
        #expect(headers["X-Vault-Aws-Iam-Server-Id"] == ["vault.internal"])
        let authorization = try #require(headers["Authorization"]?.first)
        #expect(authorization.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"))
        #expect(authorization.contains("x-vault-aws-iam-server-id"))
    }

    /// aws_ec2: the PKCS#7 instance identity document over IMDSv2, without line breaks, and a
    /// nonce that stays the same for every login of the agent (Vault binds it on first login).
    @Test func awsEC2LoginSendsThePKCS7DocumentAndAStableNonce() async throws {
        let document = "MIAGCSqGSIb3DQEHAqCAMIACAQExCzAJBgUrDgMCGgUAMIAGCSqGSIb3DQEHAaCAJIAEggHbewog\nICJkZXZwYXlQcm9kdWN0Q29kZXMiIDogbnVsbA==\n"
        let imds = try await LoopbackHTTPServer { request in
            switch (request.method, request.path) {
            case ("PUT", "/latest/api/token"): return .init(200, "imds-session")
            case ("GET", "/latest/dynamic/instance-identity/pkcs7") where request.headers["x-aws-ec2-metadata-token"] == "imds-session":
                return .init(200, document)
            default: return .init(401)
            }
        }
        let chain = AWSCredentialChain(settings: AWSSettings(imdsEndpoint: imds.url), http: CurlHTTPClient(), environment: [:])
        let login = try VaultLogin(method: .awsEC2, role: "gateway", identity: .aws(chain), http: CurlHTTPClient(), environment: [:])
        let first = try await login.payload(now: Date())
        let second = try await login.payload(now: Date())
        #expect(Set(first.keys) == ["role", "pkcs7", "nonce"])
        #expect(first["pkcs7"] == document.replacingOccurrences(of: "\n", with: ""))
        #expect(first["nonce"]?.isEmpty == false)
        #expect(first["nonce"] == second["nonce"])
    }

    @Test func serverErrorsAreUnavailableWithVaultsMessages() async throws {
        let server = try await Self.vault(503, #"{"errors":["Vault is sealed"]}"#)
        let error = await #expect(throws: CloudAuthError.self) { try await client(server).lookupSelf(Secret("hvs.test-token")) }
        #expect(error?.code == .unavailable)
        #expect(error?.message == "Vault answered HTTP 503: Vault is sealed")
        #expect(error?.remedy?.contains("sealed") == true)
    }

    @Test func errorsNeverEchoTheToken() async throws {
        let token = Secret("hvs.CAESIsecretvalue")
        let server = try await Self.vault(400, #"{"errors":["bad token hvs.CAESIsecretvalue"]}"#)
        let error = await #expect(throws: CloudAuthError.self) { try await client(server).renewSelf(token) }
        #expect(error?.description.contains("hvs.CAESIsecretvalue") == false)
        #expect(error?.description.contains("<redacted>") == true)
    }

    @Test func malformedAnswersAreNamed() async throws {
        let notJSON = try await Self.vault(200, "<html>proxy</html>")
        let error = await #expect(throws: CloudAuthError.self) { try await client(notJSON).login(mount: "jwt", payload: [:]) }
        #expect(error?.code == .malformedResponse)
        #expect(error?.message.contains("not a JSON object") == true)

        let noToken = try await Self.vault(200, #"{"auth":{"lease_duration":5}}"#)
        let missing = await #expect(throws: CloudAuthError.self) { try await client(noToken).login(mount: "jwt", payload: [:]) }
        #expect(missing?.message.contains("client_token") == true)
    }
}
