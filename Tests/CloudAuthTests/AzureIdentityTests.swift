import CloudAuth
import CloudEmulator
import Foundation
import Testing

/// AzureIdentity against the emulator over real HTTP: every source, retries, and bad answers.
@Suite struct AzureIdentityTests {
    let http = CurlHTTPClient()

    private func identity(_ emulator: CloudEmulator, _ client: CloudEmulator.Client = .azureIMDS,
                          settings: AzureSettings = AzureSettings(), delays: RecordedDelays = RecordedDelays(),
                          clock: @escaping @Sendable () -> Date = Date.init) -> AzureIdentity {
        AzureIdentity(settings: settings, http: http, environment: emulator.environment(for: client),
                      retry: delays.policy, clock: clock)
    }

    @Test func imdsIssuesASystemAssignedTokenForTheResource() async throws {
        try await withEmulator { emulator in
            let before = Date()
            let token = try await identity(emulator).token(resource: AzureResource.postgres)
            #expect(emulator.wasIssued(token.token.reveal()))
            let claims = try JWT.decode(token.token.reveal(), source: "test")
            #expect(claims.audiences == [AzureResource.postgres])
            #expect(claims.string("oid") == emulator.configuration.systemIdentity.objectID)
            #expect(claims.string("xms_mirid") == emulator.configuration.systemIdentity.resourceID)
            #expect(abs(token.expiresAt.timeIntervalSince(before) - 3600) < 5)
            #expect(token.refreshAfter == nil)
            #expect(emulator.requestCount(.azureIMDSToken) == 1)
        }
    }

    @Test(arguments: ["client", "object", "resource"])
    func imdsSelectsAUserAssignedIdentity(by selector: String) async throws {
        try await withEmulator { emulator in
            let user = emulator.configuration.userIdentities[0]
            let settings = switch selector {
            case "client": AzureSettings(clientID: user.clientID)
            case "object": AzureSettings(objectID: user.objectID)
            default: AzureSettings(resourceID: user.resourceID)
            }
            let token = try await identity(emulator, settings: settings).token(resource: AzureResource.redis)
            let claims = try JWT.decode(token.token.reveal(), source: "test")
            #expect(claims.string("oid") == user.objectID)
            #expect(claims.string("appid") == user.clientID)
        }
    }

    @Test func longLivedTokensCarryRefreshIn() async throws {
        try await withEmulator({ $0.tokenLifetime = 86_400 }) { emulator in
            let token = try await identity(emulator).token(resource: AzureResource.management)
            let refresh = try #require(token.refreshAfter)
            #expect(abs(refresh.timeIntervalSinceNow - 43_200) < 5)
        }
    }

    @Test func anUnknownIdentityIsFinalAndSaysSo() async throws {
        try await withEmulator { emulator in
            let delays = RecordedDelays()
            let error = try #require(await cloudAuthError {
                try await identity(emulator, settings: AzureSettings(clientID: "no-such-identity"), delays: delays)
                    .token(resource: AzureResource.postgres)
            })
            #expect(error.code == .rejected)
            #expect(error.message.contains("HTTP 400"))
            #expect(error.message.contains("invalid_request: Identity not found"))
            #expect(error.remedy?.contains("no such managed identity") == true)
            #expect(error.source.contains("/metadata/identity/oauth2/token"))
            #expect(emulator.requestCount(.azureIMDSToken) == 1)
            #expect(delays.recorded.isEmpty)
        }
    }

    @Test(arguments: [404, 410, 429, 500, 503])
    func transientAnswersAreRetriedWithBackoff(status: Int) async throws {
        try await withEmulator { emulator in
            emulator.inject(.status(status, body: #"{"error":"busy","error_description":"try later"}"#),
                            at: .azureIMDSToken, times: 2)
            let delays = RecordedDelays()
            let token = try await identity(emulator, delays: delays).token(resource: AzureResource.postgres)
            #expect(emulator.wasIssued(token.token.reveal()))
            #expect(emulator.requestCount(.azureIMDSToken) == 3)
            #expect(delays.recorded == [.seconds(1), .seconds(2)])
        }
    }

    @Test func retriesStopWithinTheBudgetAndReportTheLastAnswer() async throws {
        try await withEmulator { emulator in
            emulator.inject(.status(500, body: #"{"error":"server_error","error_description":"IMDS is down"}"#),
                            at: .azureIMDSToken)
            let delays = RecordedDelays()
            let error = try #require(await cloudAuthError {
                try await identity(emulator, delays: delays).token(resource: AzureResource.postgres)
            })
            #expect(error.code == .unavailable)
            #expect(error.message.contains("HTTP 500: server_error: IMDS is down"))
            #expect(emulator.requestCount(.azureIMDSToken) == 5)
            #expect(delays.recorded == [.seconds(1), .seconds(2), .seconds(4), .seconds(8)])
        }
    }

    @Test func appServiceTakesPrecedenceOverIMDS() async throws {
        try await withEmulator { emulator in
            var environment = emulator.environment(for: .azureIMDS)
            environment.merge(emulator.environment(for: .azureAppService)) { $1 }
            let identity = AzureIdentity(settings: AzureSettings(), http: http, environment: environment)
            #expect(try identity.source() == .appService(endpoint: emulator.appServiceEndpoint))
            let token = try await identity.token(resource: AzureResource.postgres)
            #expect(emulator.wasIssued(token.token.reveal()))
            #expect(emulator.requestCount(.azureAppServiceToken) == 1)
            #expect(emulator.requestCount(.azureIMDSToken) == 0)
        }
    }

    @Test func appServiceRefusesAWrongIdentityHeaderWithoutEchoingIt() async throws {
        try await withEmulator { emulator in
            var environment = emulator.environment(for: .azureAppService)
            environment["IDENTITY_HEADER"] = "wrong-secret-value"
            let error = try #require(await cloudAuthError {
                try await AzureIdentity(settings: AzureSettings(), http: http, environment: environment)
                    .token(resource: AzureResource.postgres)
            })
            #expect(error.code == .rejected)
            #expect(error.message.contains("HTTP 401"))
            #expect(error.source.contains("IDENTITY_ENDPOINT"))
            #expect(!error.description.contains("wrong-secret-value"))
        }
    }

    @Test func workloadIdentityExchangesTheFederatedTokenAndRereadsTheFile() async throws {
        try await withEmulator { emulator in
            let tokenFile = try scratchDirectory() + "/azure-identity-token"
            try emulator.writeFederatedToken(to: tokenFile)
            var environment = emulator.environment(for: .azureWorkloadIdentity(tokenFile: tokenFile))
            environment.merge(emulator.environment(for: .azureAppService)) { $1 }
            environment.merge(emulator.environment(for: .azureIMDS)) { $1 }
            let identity = AzureIdentity(settings: AzureSettings(), http: http, environment: environment)
            let token = try await identity.token(resource: AzureResource.management)
            let claims = try JWT.decode(token.token.reveal(), source: "test")
            #expect(claims.audiences == [AzureResource.management])
            #expect(claims.string("appid") == emulator.configuration.workloadClientID)
            #expect(emulator.requestCount(.azureEntraToken) == 1)
            #expect(emulator.requestCount(.azureAppServiceToken) == 0)

            // The kubelet rotates the file: the next exchange must use the new content.
            try emulator.writeFederatedToken(to: tokenFile, subject: "system:serviceaccount:default:someone-else")
            let error = try #require(await cloudAuthError { try await identity.token(resource: AzureResource.management) })
            #expect(error.code == .rejected)
            #expect(error.message.contains("invalid_client: AADSTS70021"))
            #expect(error.source.contains("/oauth2/v2.0/token"))
        }
    }

    @Test func halfConfiguredWorkloadIdentityNamesWhatIsMissing() async throws {
        let identity = AzureIdentity(settings: AzureSettings(), http: http,
                                     environment: ["AZURE_FEDERATED_TOKEN_FILE": "/var/run/token", "AZURE_CLIENT_ID": "c"])
        let error = try #require(await cloudAuthError { try await identity.token(resource: AzureResource.redis) })
        #expect(error.code == .configuration)
        #expect(error.message.contains("AZURE_TENANT_ID"))
        #expect(!error.message.contains("AZURE_CLIENT_ID"))
    }

    @Test func aMissingFederatedTokenFileNamesTheFile() async throws {
        try await withEmulator { emulator in
            let path = try scratchDirectory() + "/absent-token"
            let identity = AzureIdentity(settings: AzureSettings(), http: http,
                                         environment: emulator.environment(for: .azureWorkloadIdentity(tokenFile: path)))
            let error = try #require(await cloudAuthError { try await identity.token(resource: AzureResource.redis) })
            #expect(error.code == .io)
            #expect(error.source.contains(path))
            #expect(error.source.contains("AZURE_FEDERATED_TOKEN_FILE"))
            #expect(emulator.requestCount(.azureEntraToken) == 0)
        }
    }

    @Test func instanceMetadataGivesWhatVaultNeeds() async throws {
        try await withEmulator({ $0.vmScaleSetName = "credagent-vmss" }) { emulator in
            let metadata = try await identity(emulator).instanceMetadata()
            #expect(metadata.subscriptionID == emulator.configuration.subscriptionID)
            #expect(metadata.resourceGroup == emulator.configuration.resourceGroup)
            #expect(metadata.vmName == emulator.configuration.vmName)
            #expect(metadata.vmScaleSetName == "credagent-vmss")
            #expect(metadata.resourceID == emulator.configuration.systemIdentity.resourceID)
        }
    }

    @Test func malformedJSONIsReportedWithoutTheBody() async throws {
        try await withEmulator { emulator in
            emulator.inject(.malformedJSON, at: .azureIMDSToken)
            let error = try #require(await cloudAuthError { try await identity(emulator).token(resource: AzureResource.redis) })
            #expect(error.code == .malformedResponse)
            #expect(error.message.contains("not a JSON object"))
            #expect(!error.description.contains("eyJ"))
        }
    }

    @Test func anExpiredTokenIsRefusedWithoutShowingIt() async throws {
        try await withEmulator { emulator in
            emulator.inject(.expiredToken, at: .azureIMDSToken)
            let error = try #require(await cloudAuthError { try await identity(emulator).token(resource: AzureResource.redis) })
            #expect(error.code == .expired)
            #expect(error.source.contains("Azure IMDS"))
            #expect(!error.description.contains("eyJ"))
        }
    }

    @Test func tokensEchoedInErrorBodiesAreMasked() async throws {
        try await withEmulator { emulator in
            emulator.inject(.status(400, body: #"{"error":"invalid_request","error_description":"bad eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}"#),
                            at: .azureIMDSToken, times: 1)
            let json = try #require(await cloudAuthError { try await identity(emulator).token(resource: AzureResource.redis) })
            #expect(json.message.contains("invalid_request: bad <redacted>"))
            #expect(!json.description.contains("eyJhbGciOiJSUzI1NiJ9"))

            emulator.inject(.body(status: 502, contentType: "text/plain", body: "proxy echo: ya29.c.secretvalue"),
                            at: .azureIMDSToken)
            let text = try #require(await cloudAuthError { try await identity(emulator).token(resource: AzureResource.redis) })
            #expect(text.message.contains("HTTP 502: proxy echo: <redacted>"))
            #expect(!text.description.contains("secretvalue"))
        }
    }

    @Test func anUnreachableIMDSIsUnavailableAndNamed() async throws {
        let identity = AzureIdentity(settings: AzureSettings(imdsEndpoint: "http://127.0.0.1:1"), http: http,
                                     environment: [:], retry: RecordedDelays().policy)
        let error = try #require(await cloudAuthError { try await identity.token(resource: AzureResource.redis) })
        #expect(error.code == .unavailable)
        #expect(error.source.contains("http://127.0.0.1:1/metadata/identity/oauth2/token"))
        #expect(!error.source.contains("resource="))
    }

    @Test func aStalledIMDSTimesOut() async throws {
        try await withEmulator { emulator in
            emulator.inject(.stall(seconds: 8), at: .azureIMDSToken)
            let error = try #require(await cloudAuthError { try await identity(emulator).token(resource: AzureResource.redis) })
            #expect(error.code == .timeout)
        }
    }

    // MARK: Microsoft's documented sample responses, served verbatim

    @Test func documentedIMDSResponseParses() async throws {
        try await withEmulator { emulator in
            emulator.inject(.body(status: 200, contentType: "application/json", body: try fixture("azure/imds-token.json")),
                            at: .azureIMDSToken)
            let token = try await identity(emulator, clock: { Date(timeIntervalSince1970: 1_506_480_300) })
                .token(resource: AzureResource.management)
            #expect(token.expiresAt == Date(timeIntervalSince1970: 1_506_484_173))
            #expect(token.issuedAt == Date(timeIntervalSince1970: 1_506_480_273))
            // `expires_on` is an instant the issuer stated: a step of this clock does not move it.
            #expect(!token.expiresByLocalClock)
            #expect(token.token.reveal().hasPrefix("eyJ0eXAi"))

            // With today's clock the same (2017) sample is expired, and the error does not show it.
            let error = try #require(await cloudAuthError { try await identity(emulator).token(resource: AzureResource.management) })
            #expect(error.code == .expired)
            #expect(!error.description.contains("eyJ0eXAi"))
        }
    }

    @Test func documentedAppServiceResponseParses() async throws {
        try await withEmulator { emulator in
            emulator.inject(.body(status: 200, contentType: "application/json", body: try fixture("azure/app-service-token.json")),
                            at: .azureAppServiceToken)
            let token = try await identity(emulator, .azureAppService, clock: { Date(timeIntervalSince1970: 1_586_981_135) })
                .token(resource: "https://vault.azure.net")
            #expect(token.expiresAt == Date(timeIntervalSince1970: 1_586_984_735))
            #expect(token.issuedAt == Date(timeIntervalSince1970: 1_586_981_135))
        }
    }

    @Test func documentedEntraResponsesParse() async throws {
        try await withEmulator { emulator in
            let tokenFile = try scratchDirectory() + "/token"
            try emulator.writeFederatedToken(to: tokenFile)
            let client = CloudEmulator.Client.azureWorkloadIdentity(tokenFile: tokenFile)
            emulator.inject(.body(status: 200, contentType: "application/json", body: try fixture("azure/entra-token.json")),
                            at: .azureEntraToken, times: 1)
            let now = Date()
            let token = try await identity(emulator, client, clock: { now }).token(resource: AzureResource.redis)
            #expect(token.expiresAt == now.addingTimeInterval(3599))
            // Entra states `expires_in` only: the expiry is reckoned on this machine's clock.
            #expect(token.expiresByLocalClock)

            emulator.inject(.body(status: 400, contentType: "application/json", body: try fixture("azure/entra-error.json")),
                            at: .azureEntraToken, times: 1)
            let error = try #require(await cloudAuthError { try await identity(emulator, client).token(resource: AzureResource.redis) })
            #expect(error.code == .rejected)
            #expect(error.message.contains("invalid_client: AADSTS70021: No matching federated identity record"))
        }
    }

    @Test func documentedIdentityNotFoundIsFinal() async throws {
        try await withEmulator { emulator in
            emulator.inject(.body(status: 400, contentType: "application/json",
                                  body: try fixture("azure/imds-error-identity-not-found.json")), at: .azureIMDSToken)
            let delays = RecordedDelays()
            let error = try #require(await cloudAuthError {
                try await identity(emulator, delays: delays).token(resource: AzureResource.redis)
            })
            #expect(error.remedy?.contains("no such managed identity") == true)
            #expect(delays.recorded.isEmpty)
        }
    }

    @Test func documentedInstanceMetadataParses() throws {
        let metadata = try AzureInstanceMetadata(parsing: Array(try fixture("azure/instance-metadata.json").utf8), source: "fixture")
        #expect(metadata.vmName == "examplevmname")
        #expect(metadata.vmScaleSetName == "crpteste9vflji9")
        #expect(metadata.resourceGroup == "macikgo-test-may-23")
        #expect(metadata.resourceID.hasSuffix("/virtualMachines/examplevmname"))
    }

    @Test func resourceShortNamesResolve() {
        #expect(AzureResource.named("postgres") == "https://ossrdbms-aad.database.windows.net")
        #expect(AzureResource.named("https://example.org") == "https://example.org")
    }
}
