import CloudAuth
import CloudEmulator
import Foundation
import Testing

/// GCPIdentity against the emulator over real HTTP: metadata server and key file, and bad input.
@Suite struct GCPIdentityTests {
    let http = CurlHTTPClient()

    private func metadataIdentity(_ emulator: CloudEmulator, clock: @escaping @Sendable () -> Date = Date.init) -> GCPIdentity {
        GCPIdentity(settings: GCPSettings(), http: http, environment: emulator.environment(for: .gcpMetadata), clock: clock)
    }

    private func keyFileIdentity(_ emulator: CloudEmulator) throws -> (GCPIdentity, String) {
        let path = try scratchDirectory() + "/key.json"
        try emulator.writeServiceAccountKey(to: path)
        return (GCPIdentity(settings: GCPSettings(), http: http, environment: emulator.environment(for: .gcpKeyFile(path: path))), path)
    }

    @Test func metadataServerIssuesAnAccessTokenForScopes() async throws {
        try await withEmulator { emulator in
            let before = Date()
            let token = try await metadataIdentity(emulator).accessToken(scopes: ["https://www.googleapis.com/auth/sqlservice.login"])
            #expect(emulator.wasIssued(token.token.reveal()))
            #expect(abs(token.expiresAt.timeIntervalSince(before) - 3600) < 5)
            #expect(emulator.requestCount(.gcpMetadataToken) == 1)
        }
    }

    @Test func metadataServerIdentityTokenHasTheFullFormatClaims() async throws {
        try await withEmulator { emulator in
            let token = try await metadataIdentity(emulator).identityToken(audience: "vault/kong")
            let claims = try JWT.decode(token.token.reveal(), source: "test")
            #expect(claims.audiences == ["vault/kong"])
            #expect(claims.string("iss") == emulator.gcpIssuer)
            #expect(claims.string("email") == emulator.configuration.gcpServiceAccountEmail)
            #expect(claims.claims["email_verified"] as? Bool == true)
            let google = try #require(claims.claims["google"] as? [String: any Sendable])
            let compute = try #require(google["compute_engine"] as? [String: any Sendable])
            #expect(compute["instance_name"] as? String == emulator.configuration.gcpInstanceName)
            #expect(token.expiresAt == claims.date("exp"))
        }
    }

    @Test func metadataServerEmailAndCloudSQLUser() async throws {
        try await withEmulator { emulator in
            let email = try await metadataIdentity(emulator).email()
            #expect(email == emulator.configuration.gcpServiceAccountEmail)
            #expect(GCPIdentity.cloudSQLUser(email: email) == "credagent@credagent-emulator.iam")
            #expect(GCPIdentity.cloudSQLUser(email: "alice@example.com") == "alice@example.com")
        }
    }

    @Test func anAnswerWithoutMetadataFlavorIsRefused() async throws {
        try await withEmulator { emulator in
            emulator.inject(.dropMetadataFlavor, at: .gcpMetadataToken)
            let error = try #require(await cloudAuthError { try await metadataIdentity(emulator).accessToken() })
            #expect(error.code == .malformedResponse)
            #expect(error.message.contains("Metadata-Flavor: Google"))
            #expect(!error.description.contains("ya29"))
        }
    }

    @Test func theEmulatorRefusesRequestsWithoutMetadataFlavor() async throws {
        try await withEmulator { emulator in
            let response = try await http.execute(HTTPRequest(
                url: "\(emulator.gcpBaseURL)/computeMetadata/v1/instance/service-accounts/default/token"))
            #expect(response.status == 403)
            #expect(response.headers["metadata-flavor"] == "Google")
            #expect(response.bodyText.contains("Missing Metadata-Flavor:Google header"))
        }
    }

    @Test func anUnknownServiceAccountIs404WithAHint() async throws {
        try await withEmulator { emulator in
            let identity = GCPIdentity(settings: GCPSettings(serviceAccount: "other@p.iam.gserviceaccount.com"), http: http,
                                       environment: emulator.environment(for: .gcpMetadata))
            let error = try #require(await cloudAuthError { try await identity.accessToken() })
            #expect(error.code == .rejected)
            #expect(error.message.contains("HTTP 404"))
            #expect(error.source.contains("/service-accounts/other@p.iam.gserviceaccount.com/token"))
            #expect(error.remedy?.contains("attached") == true)
        }
    }

    @Test func metadataErrorsAndExpiryAreReported() async throws {
        try await withEmulator { emulator in
            emulator.inject(.status(503, body: #"{"error":"unavailable","error_description":"metadata server restarting"}"#),
                            at: .gcpMetadataToken, times: 1)
            let unavailable = try #require(await cloudAuthError { try await metadataIdentity(emulator).accessToken() })
            #expect(unavailable.code == .unavailable)
            #expect(unavailable.message.contains("unavailable: metadata server restarting"))

            emulator.inject(.expiredToken, at: .gcpMetadataToken, times: 1)
            let expired = try #require(await cloudAuthError { try await metadataIdentity(emulator).accessToken() })
            #expect(expired.code == .expired)

            emulator.inject(.malformedJSON, at: .gcpMetadataToken, times: 1)
            let malformed = try #require(await cloudAuthError { try await metadataIdentity(emulator).accessToken() })
            #expect(malformed.code == .malformedResponse)
            #expect(!malformed.description.contains("ya29"))
        }
    }

    @Test func anUnreachableMetadataServerIsNamed() async throws {
        let identity = GCPIdentity(settings: GCPSettings(metadataHost: "127.0.0.1:1"), http: http, environment: [:])
        let error = try #require(await cloudAuthError { try await identity.email() })
        #expect(error.code == .unavailable)
        #expect(error.source.contains("http://127.0.0.1:1/computeMetadata/v1/instance/service-accounts/default/email"))
    }

    @Test func keyFileTakesPrecedenceAndSignsAnAssertion() async throws {
        try await withEmulator { emulator in
            let path = try scratchDirectory() + "/key.json"
            try emulator.writeServiceAccountKey(to: path)
            var environment = emulator.environment(for: .gcpMetadata)
            environment.merge(emulator.environment(for: .gcpKeyFile(path: path))) { $1 }
            let identity = GCPIdentity(settings: GCPSettings(), http: http, environment: environment)
            #expect(identity.source == .keyFile(path: path, origin: "env GOOGLE_APPLICATION_CREDENTIALS"))
            let token = try await identity.accessToken()
            #expect(emulator.wasIssued(token.token.reveal()))
            #expect(emulator.requestCount(.gcpOAuthToken) == 1)
            #expect(emulator.requestCount(.gcpMetadataToken) == 0)
            #expect(try await identity.email() == emulator.configuration.gcpServiceAccountEmail)
        }
    }

    @Test func keyFileIdentityToken() async throws {
        try await withEmulator { emulator in
            let (identity, _) = try keyFileIdentity(emulator)
            let token = try await identity.identityToken(audience: "https://vault.example")
            let claims = try JWT.decode(token.token.reveal(), source: "test")
            #expect(claims.audiences == ["https://vault.example"])
            #expect(claims.string("email") == emulator.configuration.gcpServiceAccountEmail)
            #expect(emulator.wasIssued(token.token.reveal()))
        }
    }

    @Test func anAssertionSignedByAnotherKeyIsRejectedWithGooglesError() async throws {
        try await withEmulator { emulator in
            let path = try scratchDirectory() + "/key.json"
            // The emulator's layout, but the private key of a different emulator.
            let stranger = try CloudEmulator()
            var object = try #require(JSONFields.object(Array(stranger.serviceAccountKeyJSON().reveal().utf8)))
            object["token_uri"] = emulator.gcpTokenURI
            try Data(try JWT.jsonBytes(object)).write(to: URL(fileURLWithPath: path))
            let identity = GCPIdentity(settings: GCPSettings(keyFile: path), http: http, environment: [:])
            let error = try #require(await cloudAuthError { try await identity.accessToken() })
            #expect(error.code == .rejected)
            #expect(error.message.contains("HTTP 400: invalid_grant: Invalid JWT Signature."))
            #expect(error.source.contains(path))
            #expect(error.source.contains("gcp.key_file"))
            #expect(!error.description.contains("PRIVATE KEY"))
        }
    }

    @Test func aRotatedKeyFileIsPickedUp() async throws {
        try await withEmulator { emulator in
            let (identity, path) = try keyFileIdentity(emulator)
            _ = try await identity.accessToken()
            // Replace the file with another account's key: the next fetch must sign with it.
            var object = try #require(JSONFields.object(Array(try CloudEmulator().serviceAccountKeyJSON().reveal().utf8)))
            object["token_uri"] = emulator.gcpTokenURI
            try Data(try JWT.jsonBytes(object)).write(to: URL(fileURLWithPath: path))
            let error = try #require(await cloudAuthError { try await identity.accessToken() })
            #expect(error.message.contains("Invalid JWT Signature."))
            try emulator.writeServiceAccountKey(to: path)
            _ = try await identity.accessToken()
            #expect(emulator.requestCount(.gcpOAuthToken) == 3)
        }
    }

    @Test(arguments: [
        ("missing", nil, CloudAuthError.Code.io, "cannot read"),
        ("not json", "not json at all", .invalidInput, "not a JSON object"),
        ("authorized user", #"{"type":"authorized_user","client_id":"x","refresh_token":"y"}"#, .invalidInput, "'authorized_user'"),
        ("no email", #"{"type":"service_account","private_key":"x"}"#, .invalidInput, "no 'client_email'"),
        ("bad pem", #"{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nsecretbits\n-----END PRIVATE KEY-----\n"}"#,
         .crypto, "not a PEM-encoded RSA private key"),
    ] as [(String, String?, CloudAuthError.Code, String)])
    func badKeyFilesFailPrecisely(label: String, contents: String?, code: CloudAuthError.Code, message: String) async throws {
        let path = try scratchDirectory() + "/key.json"
        if let contents { try contents.write(toFile: path, atomically: true, encoding: .utf8) }
        let identity = GCPIdentity(settings: GCPSettings(keyFile: path), http: http, environment: [:])
        let error = try #require(await cloudAuthError { try await identity.accessToken() })
        #expect(error.code == code, "\(label)")
        #expect(error.message.contains(message), "\(label): \(error)")
        #expect(error.source.contains(path))
        #expect(!error.description.contains("secretbits"))
    }

    // MARK: Google's documented sample responses, served verbatim

    @Test func documentedMetadataTokenParses() async throws {
        try await withEmulator { emulator in
            emulator.inject(.body(status: 200, contentType: "application/json", body: try fixture("gcp/metadata-token.json")),
                            at: .gcpMetadataToken)
            let now = Date()
            let token = try await metadataIdentity(emulator, clock: { now }).accessToken()
            #expect(token.token.reveal().hasPrefix("ya29.AHES6Z"))
            #expect(token.expiresAt == now.addingTimeInterval(3599))
        }
    }

    @Test func documentedTokenEndpointAnswersParse() async throws {
        try await withEmulator { emulator in
            let (identity, _) = try keyFileIdentity(emulator)
            emulator.inject(.body(status: 200, contentType: "application/json", body: try fixture("gcp/oauth-token.json")),
                            at: .gcpOAuthToken, times: 1)
            let token = try await identity.accessToken()
            #expect(token.token.reveal() == "1/8xbJqaOZXSUZbHLl5EOtu1pxz3fmmetKx9W8CV4t79M")
            #expect(token.expiresAt.timeIntervalSince(token.issuedAt) == 3600)

            emulator.inject(.body(status: 400, contentType: "application/json", body: try fixture("gcp/oauth-error.json")),
                            at: .gcpOAuthToken, times: 1)
            let error = try #require(await cloudAuthError { try await identity.accessToken() })
            #expect(error.message.contains("invalid_grant: Invalid JWT Signature."))
        }
    }

    @Test func documentedKeyFileLayoutLoads() async throws {
        let key = try ServiceAccountKey(json: Array(try fixture("gcp/service-account.json").utf8), source: "fixture")
        #expect(key.clientEmail == "service-account@example-project.iam.gserviceaccount.com")
        #expect(key.tokenURI == "https://oauth2.googleapis.com/token")
        #expect(key.privateKeyID == "1d5a8b7c9e0f2a4b6c8d0e1f3a5b7c9d1e3f5a7b")
        #expect(key.projectID == "example-project")
    }
}
