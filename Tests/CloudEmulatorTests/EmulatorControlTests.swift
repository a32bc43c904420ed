import CloudAuth
import CloudEmulator
import Foundation
import Testing
import TestSupport

/// The emulator's own HTTP endpoints: token verification for every kind of token it can vouch for,
/// and failure injection as a demo or test script drives it (curl-style JSON over HTTP).
struct EmulatorControlTests {
    static func post(_ url: String, _ object: [String: any Sendable]) async throws -> (status: Int, body: [String: Any]) {
        let response = try await CurlHTTPClient().execute(HTTPRequest(method: "POST", url: url,
                                                                       body: try JSONSerialization.data(withJSONObject: object).map { $0 }))
        return (response.status, try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:])
    }

    static func instanceKeys(_ emulator: CloudEmulator) async throws -> AWSCredentials {
        var environment = emulator.environment(for: .awsIMDS)
        environment["HOME"] = NSTemporaryDirectory() + "no-aws-home"
        return try await AWSCredentialChain(settings: AWSSettings(), http: CurlHTTPClient(), environment: environment).credentials()
    }

    @Test("connect tokens verify with their host and user binding; forged and foreign ones do not")
    func verifiesConnectTokens() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let verify = emulator.gcpBaseURL + "/emulator/verify"  // every listener answers
            let keys = try await Self.instanceKeys(emulator)
            let rds = RDSAuthToken.make(host: "Orders.Local", port: 5432, user: "kong", region: "us-east-1", credentials: keys, at: Date())
                .token.reveal()

            let valid = try await Self.post(verify, ["token": rds, "host": "orders.local", "port": 5432, "user": "kong"])
            #expect(valid.status == 200)
            #expect(valid.body["valid"] as? Bool == true && valid.body["kind"] as? String == "rds")
            #expect(valid.body["bound_to"] as? String == "orders.local:5432" && valid.body["user"] as? String == "kong")
            let expiresAt = try #require(valid.body["expires_at"] as? Int)
            #expect(expiresAt > Int(Date().timeIntervalSince1970) + 800)

            for (expectation, reason) in [(["port": 5433] as [String: any Sendable], "bound to orders.local:5432, not orders.local:5433"),
                                          (["user": "admin"], "bound to user 'kong', not 'admin'")] {
                var request: [String: any Sendable] = ["token": rds, "host": "orders.local", "port": 5432, "user": "kong"]
                request.merge(expectation) { $1 }
                let refused = try await Self.post(verify, request)
                #expect(refused.status == 401)
                #expect(refused.body["valid"] as? Bool == false && refused.body["reason"] as? String == reason)
            }

            let forged = try await Self.post(verify, ["token": rds.replacingOccurrences(of: "DBUser=kong", with: "DBUser=root")])
            #expect((forged.body["reason"] as? String)?.hasPrefix("SignatureDoesNotMatch") == true)
            let strangerKeys = AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: Secret("x"), source: "test")
            let stranger = RDSAuthToken.make(host: "orders.local", port: 5432, user: "kong", region: "us-east-1",
                                             credentials: strangerKeys, at: Date()).token.reveal()
            #expect((try await Self.post(verify, ["token": stranger]).body["reason"] as? String)?.hasPrefix("InvalidClientTokenId") == true)

            // `+` in a query is `+` to the signature and to the binding alike: no other user can be read from it.
            let plus = RDSAuthToken.make(host: "orders.local", port: 5432, user: "a+b", region: "us-east-1", credentials: keys, at: Date())
                .token.reveal().replacingOccurrences(of: "DBUser=a%2Bb", with: "DBUser=a+b")
            #expect(emulator.verify(plus, user: "a+b").isValid)
            #expect(emulator.verify(plus, user: "a b").reason == "bound to user 'a+b', not 'a b'")

            let cache = ElastiCacheAuthToken.make(cacheName: "sessions", user: "kong", region: "us-east-1", credentials: keys, at: Date())
            let cacheVerdict = emulator.verify(cache.token.reveal(), host: "sessions", user: "kong")
            #expect(cacheVerdict.isValid && cacheVerdict.kind == "elasticache" && cacheVerdict.boundTo == "sessions")
            let old = RDSAuthToken.make(host: "orders.local", port: 5432, user: "kong", region: "us-east-1", credentials: keys,
                                        at: Date().addingTimeInterval(-901))
            #expect(emulator.verify(old.token.reveal()).reason?.hasPrefix("RequestExpired") == true)
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test("JWTs and opaque tokens the emulator issued verify; expired, foreign or other-audience ones do not")
    func verifiesJWTsAndAccessTokens() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            var environment = emulator.environment(for: .azureIMDS)
            environment["HOME"] = NSTemporaryDirectory()
            let azure = AzureIdentity(settings: AzureSettings(), http: CurlHTTPClient(), environment: environment)
            let resource = "https://ossrdbms-aad.database.windows.net"
            let token = try await azure.token(resource: resource).token.reveal()
            let verdict = try await Self.post(emulator.azureBaseURL + "/emulator/verify", ["token": token, "audience": resource])
            #expect(verdict.status == 200 && verdict.body["kind"] as? String == "jwt")
            #expect(verdict.body["principal"] as? String == emulator.configuration.systemIdentity.objectID)
            #expect(emulator.verify(token, audience: "https://vault.azure.net").reason?.hasPrefix("audience is") == true)

            emulator.inject(.expiredToken, at: .azureIMDSToken, times: 1)
            let expired = try await CurlHTTPClient().execute(HTTPRequest(
                url: emulator.azureBaseURL + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(resource)",
                headers: ["Metadata": "true"]))
            let expiredToken = try #require(try JSONSerialization.jsonObject(with: Data(expired.body)) as? [String: Any])["access_token"] as? String
            #expect(emulator.verify(try #require(expiredToken)).reason == "expired")

            let otherKey = try RSAKey.generate()
            let foreign = try JWT.sign(claims: ["exp": Int(Date().timeIntervalSince1970) + 600, "sub": "x"], key: otherKey)
            #expect(emulator.verify(foreign).reason == "the signature is not the emulator's")

            let gcp = GCPIdentity(settings: GCPSettings(), http: CurlHTTPClient(), environment: emulator.environment(for: .gcpMetadata))
            let access = try await gcp.accessToken(scopes: []).token.reveal()
            let opaque = emulator.verify(access)
            #expect(opaque.isValid && opaque.kind == "access-token")
            #expect(emulator.verify("ya29.c.not-issued").reason == "not a token this emulator issued")
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test("faults over HTTP: status after N good answers for M requests, down, latency, error rate, then back")
    func faultInjection() async throws {
        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let http = CurlHTTPClient()
            let faults = emulator.awsBaseURL + "/emulator/faults"
            func imdsToken() async throws -> Int {
                try await http.execute(HTTPRequest(method: "PUT", url: emulator.awsBaseURL + "/latest/api/token",
                                                   headers: ["X-aws-ec2-metadata-token-ttl-seconds": "60"])).status
            }

            let armed = try await Self.post(faults, ["endpoint": "aws-imds-token", "fault": "status", "status": 503, "after": 2, "times": 2])
            #expect(armed.status == 200 && armed.body["injected"] as? [String] == ["aws-imds-token"])
            var statuses: [Int] = []
            for _ in 0..<5 { statuses.append(try await imdsToken()) }
            #expect(statuses == [200, 200, 503, 503, 200])

            _ = try await Self.post(faults, ["endpoint": "aws", "fault": "down"])
            await #expect(throws: CloudAuthError.self) { _ = try await imdsToken() }
            let cleared = try await http.execute(HTTPRequest(method: "DELETE", url: faults + "?endpoint=aws"))
            #expect(cleared.status == 200)
            #expect(try await imdsToken() == 200)

            _ = try await Self.post(faults, ["endpoint": "aws-imds-token", "fault": "latency", "seconds": 0.3, "times": 1])
            let started = ContinuousClock.now
            #expect(try await imdsToken() == 200)
            #expect(ContinuousClock.now - started >= .milliseconds(300))

            // 200 requests at a 50 % error rate: outside 40-160 errors is a 1-in-10^17 event.
            _ = try await Self.post(faults, ["endpoint": "aws-imds-token", "fault": "status", "status": 500, "rate": 0.5])
            var errors = 0
            for _ in 0..<200 where try await imdsToken() == 500 { errors += 1 }
            #expect((40...160).contains(errors))
            _ = try await http.execute(HTTPRequest(method: "DELETE", url: faults))

            let counts = try await http.execute(HTTPRequest(url: emulator.azureBaseURL + "/emulator/requests"))
            let perEndpoint = try #require(try JSONSerialization.jsonObject(with: Data(counts.body)) as? [String: Int])
            #expect(perEndpoint["aws-imds-token"] == emulator.requestCount(.awsIMDSToken))
            #expect(perEndpoint["aws-imds-token"] == 208)

            for (body, message) in [(["endpoint": "nowhere", "fault": "down"], "endpoint must be one of"),
                                    (["endpoint": "aws", "fault": "explode"], "fault must be status, latency"),
                                    (["endpoint": "aws", "fault": "status", "status": 200], "status must be an error status"),
                                    (["endpoint": "aws", "fault": "down", "rate": 2], "rate must be in (0, 1]"),
                                    (["endpoint": "aws", "fault": "down", "times": 1e300], "times must be a whole number"),
                                    (["endpoint": "aws", "fault": "down", "after": -1], "after must be a whole number"),
                                    (["endpoint": "aws", "fault": "status", "status": 1e300], "status must be an error status")] as [([String: any Sendable], String)] {
                let refused = try await Self.post(faults, body)
                #expect(refused.status == 400)
                #expect((refused.body["error"] as? String)?.hasPrefix(message) == true, "\(body)")
            }
        } cleanup: {
            try? await emulator.stop()
        }
    }
}
