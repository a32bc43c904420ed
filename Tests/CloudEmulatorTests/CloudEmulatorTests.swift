import CloudAuth
@testable import CloudEmulator
import Foundation
import Testing

/// The emulator as a server: wire formats, what it refuses, discovery, and its controls.
@Suite struct CloudEmulatorTests {
    let http = CurlHTTPClient()

    private func withEmulator(_ body: (CloudEmulator) async throws -> Void) async throws {
        let emulator = try await CloudEmulator.start()
        do { try await body(emulator) } catch {
            try? await emulator.stop()
            throw error
        }
        try await emulator.stop()
    }

    private func get(_ url: String, _ headers: HTTPHeaders = [:]) async throws -> HTTPResponse {
        try await http.execute(HTTPRequest(url: url, headers: headers))
    }

    private func post(_ url: String, form: [(String, String)]) async throws -> HTTPResponse {
        try await http.execute(HTTPRequest(method: "POST", url: url,
                                           headers: ["Content-Type": "application/x-www-form-urlencoded"],
                                           body: Array(FormEncoding.encode(form).utf8)))
    }

    private func json(_ response: HTTPResponse) throws -> [String: any Sendable] {
        try #require(JSONFields.object(response.body), "not JSON: \(response.bodyText)")
    }

    private func imdsURL(_ emulator: CloudEmulator, resource: String = AzureResource.postgres) -> String {
        "\(emulator.azureBaseURL)/metadata/identity/oauth2/token?" + FormEncoding.encode([("api-version", "2018-02-01"), ("resource", resource)])
    }

    @Test func imdsAnswersInTheDocumentedShapeAndRequiresTheMetadataHeader() async throws {
        try await withEmulator { emulator in
            let refused = try await get(imdsURL(emulator))
            #expect(refused.status == 400)
            #expect(try json(refused)["error_description"] as? String == "Required metadata header not specified")

            let response = try await get(imdsURL(emulator), ["Metadata": "true"])
            #expect(response.status == 200)
            let body = try json(response)
            for field in ["access_token", "expires_in", "expires_on", "not_before", "resource", "token_type", "client_id"] {
                #expect(body[field] is String, "\(field) is a string, as IMDS sends it")
            }
            #expect(body["resource"] as? String == AzureResource.postgres)
            #expect(emulator.requestCount(.azureIMDSToken) == 2)
        }
    }

    @Test func issuedTokensVerifyAgainstThePublishedJWKS() async throws {
        try await withEmulator { emulator in
            let discovery = try json(try await get("\(emulator.azureIssuer)/.well-known/openid-configuration"))
            #expect(discovery["issuer"] as? String == emulator.azureIssuer)
            let jwksURI = try #require(discovery["jwks_uri"] as? String)
            let keys = try #require(try json(try await get(jwksURI))["keys"] as? [any Sendable])
            let key = try #require(keys.first as? [String: any Sendable])
            let (modulus, exponent) = emulator.signingKey.publicComponents()
            #expect(key["n"] as? String == Encoding.base64URL(modulus))
            #expect(key["e"] as? String == Encoding.base64URL(exponent))

            let token = try #require(try json(try await get(imdsURL(emulator), ["Metadata": "true"]))["access_token"] as? String)
            let decoded = try JWT.decode(token, source: "test")
            #expect(decoded.header["kid"] as? String == key["kid"] as? String)
            #expect(decoded.hasValidSignature(key: emulator.signingKey))
            #expect(decoded.string("iss") == emulator.azureIssuer)
            #expect(decoded.string("tid") == emulator.configuration.tenantID)
            for claim in ["iat", "nbf", "exp"] { #expect(decoded.date(claim) != nil, "\(claim)") }

            let gcpDiscovery = try json(try await get("\(emulator.gcpIssuer)/.well-known/openid-configuration"))
            #expect(gcpDiscovery["issuer"] as? String == emulator.gcpIssuer)
            let gcpKeys = try json(try await get(try #require(gcpDiscovery["jwks_uri"] as? String)))
            #expect((gcpKeys["keys"] as? [any Sendable])?.count == 1)

            let kubernetes = try json(try await get("\(emulator.kubernetesIssuer)/.well-known/openid-configuration"))
            #expect(kubernetes["issuer"] as? String == emulator.kubernetesIssuer)
            let kubernetesKeys = try json(try await get(try #require(kubernetes["jwks_uri"] as? String)))
            #expect((kubernetesKeys["keys"] as? [[String: any Sendable]])?.first?["n"] as? String == Encoding.base64URL(modulus))
            #expect(try JWT.decode(try emulator.webIdentityToken(), source: "test").hasValidSignature(key: emulator.signingKey))
        }
    }

    @Test func failuresApplyForTheGivenNumberOfRequests() async throws {
        try await withEmulator { emulator in
            emulator.inject(.status(503, body: #"{"error":"busy"}"#), at: .azureIMDSToken, times: 2)
            var statuses: [Int] = []
            for _ in 0..<3 { statuses.append(try await get(imdsURL(emulator), ["Metadata": "true"]).status) }
            #expect(statuses == [503, 503, 200])

            emulator.inject(.malformedJSON, at: .azureIMDSToken)
            #expect(JSONFields.object(try await get(imdsURL(emulator), ["Metadata": "true"]).body) == nil)
            emulator.clearFailures()
            #expect(try await get(imdsURL(emulator), ["Metadata": "true"]).status == 200)
            #expect(emulator.requestCount(.azureIMDSToken) == 5)
        }
    }

    @Test func theTokenLifetimeChangesAtRuntime() async throws {
        try await withEmulator { emulator in
            emulator.tokenLifetime = 4
            let body = try json(try await get(imdsURL(emulator), ["Metadata": "true"]))
            let expiresIn = try #require(JSONFields.number(body["expires_in"]))
            #expect((3...4).contains(expiresIn))
        }
    }

    @Test func appServiceChecksTheIdentityHeader() async throws {
        try await withEmulator { emulator in
            let url = emulator.appServiceEndpoint + "?api-version=2019-08-01&resource=https%3A%2F%2Fredis.azure.com"
            #expect(try await get(url).status == 401)
            #expect(try await get(url, ["X-IDENTITY-HEADER": "guess"]).status == 401)
            let good = try await get(url, ["X-IDENTITY-HEADER": emulator.configuration.appServiceSecret.reveal()])
            #expect(good.status == 200)
            #expect(try json(good)["resource"] as? String == AzureResource.redis)
        }
    }

    @Test func entraValidatesTheFederatedAssertion() async throws {
        try await withEmulator { emulator in
            let url = "\(emulator.azureAuthorityHost)/\(emulator.configuration.tenantID)/oauth2/v2.0/token"
            func exchange(_ assertion: String, clientID: String? = nil, scope: String = "https://redis.azure.com/.default") async throws -> HTTPResponse {
                try await post(url, form: [
                    ("client_assertion", assertion), ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_id", clientID ?? emulator.configuration.workloadClientID), ("grant_type", "client_credentials"), ("scope", scope),
                ])
            }
            func description(_ response: HTTPResponse) throws -> String { try json(response)["error_description"] as? String ?? "" }

            let good = try await exchange(try emulator.federatedToken())
            #expect(good.status == 200)
            #expect(try json(good)["expires_in"] is NSNumber)

            let stranger = try CloudEmulator()
            let forged = try await exchange(try stranger.federatedToken())
            #expect(forged.status == 401)
            #expect(try description(forged).hasPrefix("AADSTS700027"))

            #expect(try description(try await exchange(try emulator.federatedToken(lifetime: -10))).hasPrefix("AADSTS700024"))
            #expect(try description(try await exchange(try emulator.federatedToken(subject: "system:serviceaccount:x:y"))).hasPrefix("AADSTS70021"))
            #expect(try description(try await exchange(try emulator.federatedToken(), clientID: "unknown")).hasPrefix("AADSTS700016"))
            #expect(try description(try await exchange(try emulator.federatedToken(), scope: "https://redis.azure.com")).hasPrefix("AADSTS1002012"))
            #expect(try description(try await exchange("not-a-jwt")).hasPrefix("AADSTS50027"))
        }
    }

    @Test func googleTokenEndpointChecksTheAssertionClaims() async throws {
        try await withEmulator { emulator in
            let key = try ServiceAccountKey(json: Array(emulator.serviceAccountKeyJSON().reveal().utf8), source: "emulator")
            #expect(key.tokenURI == emulator.gcpTokenURI)
            let now = Int(Date().timeIntervalSince1970)
            func exchange(_ claims: [String: any Sendable]) async throws -> HTTPResponse {
                let assertion = try JWT.sign(claims: claims, key: emulator.serviceAccountKey, keyID: emulator.serviceAccountKeyID)
                return try await post(emulator.gcpTokenURI, form: [
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion),
                ])
            }
            let base: [String: any Sendable] = [
                "iss": key.clientEmail, "aud": emulator.gcpTokenURI, "iat": now, "exp": now + 3600, "scope": "s",
            ]
            #expect(try await exchange(base).status == 200)
            var googleAudience = base
            googleAudience["aud"] = "https://oauth2.googleapis.com/token"
            #expect(try await exchange(googleAudience).status == 200)
            var wrongAudience = base
            wrongAudience["aud"] = "https://sts.example/token"
            #expect(try json(try await exchange(wrongAudience))["error"] as? String == "invalid_grant")
            var tooLong = base
            tooLong["exp"] = now + 7200
            #expect((try json(try await exchange(tooLong))["error_description"] as? String)?.contains("short-lived") == true)
            var noScope = base
            noScope["scope"] = nil
            #expect(try json(try await exchange(noScope))["error"] as? String == "invalid_scope")
            var identity = noScope
            identity["target_audience"] = "https://service.example"
            let idToken = try #require(try json(try await exchange(identity))["id_token"] as? String)
            #expect(try JWT.decode(idToken, source: "test").audiences == ["https://service.example"])
        }
    }

    @Test func concurrentClientsAreAllServed() async throws {
        try await withEmulator { emulator in
            let url = "\(emulator.gcpBaseURL)/computeMetadata/v1/instance/service-accounts/default/email"
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<40 { group.addTask { try await get(url, ["Metadata-Flavor": "Google"]).status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 40))
            #expect(emulator.requestCount(.gcpMetadataEmail) == 40)
        }
    }

    @Test func stoppingClosesTheListeners() async throws {
        let emulator = try await CloudEmulator.start()
        let url = "\(emulator.azureBaseURL)/metadata/instance?api-version=2021-02-01"
        #expect(try await get(url, ["Metadata": "true"]).status == 200)
        try await emulator.stop()
        await #expect(throws: CloudAuthError.self) { try await get(url, ["Metadata": "true"]) }
    }
}
