import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing

/// `credagent token azure|gcp` and `credagent emulate` as processes, against the emulator.
@Suite struct IdentityCLITests {
    private func withEmulator(_ body: (CloudEmulator) async throws -> Void) async throws {
        let emulator = try await CloudEmulator.start()
        do { try await body(emulator) } catch {
            try? await emulator.stop()
            throw error
        }
        try await emulator.stop()
    }

    /// The single line a successful one-shot command prints.
    private func onlyLine(_ result: ProcessResult) -> String? {
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        guard result.status == 0, lines.count == 2, lines[1].isEmpty else { return nil }
        return String(lines[0])
    }

    @Test func azureTokenFromEverySource() async throws {
        try await withEmulator { emulator in
            let tokenFile = try Peers.scratchDirectory("azure-wi") + "/token"
            try emulator.writeFederatedToken(to: tokenFile)
            let sources: [CloudEmulator.Client] = [.azureIMDS, .azureAppService, .azureWorkloadIdentity(tokenFile: tokenFile)]
            for source in sources {
                let result = try await runCredagent(["token", "azure", "--resource", "postgres"],
                                                    environment: emulator.environment(for: source))
                let token = try #require(onlyLine(result), "\(source): \(result.stderr)")
                #expect(emulator.wasIssued(token))
                #expect(try JWT.decode(token, source: "test").audiences == [AzureResource.postgres])
                #expect(result.stderr.isEmpty)
            }
            #expect(emulator.requestCount(.azureIMDSToken) == 1)
            #expect(emulator.requestCount(.azureAppServiceToken) == 1)
            #expect(emulator.requestCount(.azureEntraToken) == 1)
        }
    }

    @Test func azureUsageAndFetchFailuresExitDistinctly() async throws {
        try await withEmulator { emulator in
            let environment = emulator.environment(for: .azureIMDS)
            let usage = try await runCredagent(["token", "azure"], environment: environment)
            #expect(usage.status == 2)
            #expect(usage.stdout.isEmpty)
            #expect(usage.stderr.contains("--resource is required"))

            let unknown = try await runCredagent(["token", "azure", "--resource", "redis", "--client-id", "nobody"],
                                                 environment: environment)
            #expect(unknown.status == 1)
            #expect(unknown.stdout.isEmpty)
            #expect(unknown.stderr.contains("Identity not found"))

            emulator.inject(.expiredToken, at: .azureIMDSToken)
            let expired = try await runCredagent(["token", "azure", "--resource", "redis"], environment: environment)
            #expect(expired.status == 1)
            #expect(expired.stdout.isEmpty)
            #expect(!expired.stderr.contains("eyJ"))
        }
    }

    @Test func azureUnreachableIMDSFailsNamingIt() async throws {
        let result = try await runCredagent(["token", "azure", "--resource", "redis"],
                                            environment: ["IMDS_ENDPOINT": "http://127.0.0.1:1"])
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains("http://127.0.0.1:1/metadata/identity/oauth2/token"))
    }

    @Test func gcpTokensAndEmailFromTheMetadataServerAndAKeyFile() async throws {
        try await withEmulator { emulator in
            let keyFile = try Peers.scratchDirectory("gcp-key") + "/key.json"
            try emulator.writeServiceAccountKey(to: keyFile)
            for environment in [emulator.environment(for: .gcpMetadata), emulator.environment(for: .gcpKeyFile(path: keyFile))] {
                let access = try await runCredagent(["token", "gcp", "--scopes", "https://www.googleapis.com/auth/sqlservice.login"],
                                                    environment: environment)
                #expect(emulator.wasIssued(try #require(onlyLine(access), "\(access.stderr)")))

                let identity = try await runCredagent(["token", "gcp", "--audience", "vault/kong"], environment: environment)
                let idToken = try #require(onlyLine(identity), "\(identity.stderr)")
                #expect(try JWT.decode(idToken, source: "test").audiences == ["vault/kong"])

                let email = try await runCredagent(["token", "gcp", "--email"], environment: environment)
                #expect(onlyLine(email) == emulator.configuration.gcpServiceAccountEmail)
            }
            #expect(emulator.requestCount(.gcpMetadataToken) == 1)
            #expect(emulator.requestCount(.gcpOAuthToken) == 2)
        }
    }

    @Test func gcpUsageAndKeyFileErrors() async throws {
        let both = try await runCredagent(["token", "gcp", "--scopes", "a", "--audience", "b"])
        #expect(both.status == 2)
        #expect(both.stderr.contains("only one of"))

        let directory = try Peers.scratchDirectory("gcp-bad-key")
        let missing = try await runCredagent(["token", "gcp"], environment: ["GOOGLE_APPLICATION_CREDENTIALS": directory + "/absent.json"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains(directory + "/absent.json"))

        let malformed = directory + "/key.json"
        try #"{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"hunter2"}"#
            .write(toFile: malformed, atomically: true, encoding: .utf8)
        let bad = try await runCredagent(["token", "gcp"], environment: ["GOOGLE_APPLICATION_CREDENTIALS": malformed])
        #expect(bad.status == 1)
        #expect(bad.stdout.isEmpty)
        #expect(bad.stderr.contains("private_key"))
        #expect(!bad.stderr.contains("hunter2"))
    }

    @Test func emulateServesUntilTerminated() async throws {
        let stateDirectory = try Peers.scratchDirectory("emulator-state")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Peers.credagentBinary)
        process.arguments = ["emulate", "--token-ttl", "2m", "--state-dir", stateDirectory]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        // Read until the last line of the banner (the GCP issuer) arrives, for at most 20 s.
        let banner = try await BlockingExecutor.shared.run {
            var text = ""
            let deadline = Date().addingTimeInterval(20)
            while !text.contains("#   gcp "), Date() < deadline {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            return text
        }
        let imds = try #require(banner.split(separator: "\n").first { $0.hasPrefix("export IMDS_ENDPOINT=") })
            .dropFirst("export IMDS_ENDPOINT=".count)
        let identity = AzureIdentity(settings: AzureSettings(), http: CurlHTTPClient(), environment: ["IMDS_ENDPOINT": String(imds)])
        let token = try await identity.token(resource: AzureResource.management)
        #expect(abs(token.expiresAt.timeIntervalSinceNow - 120) < 5)

        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)

        // The state directory keeps the signing keys (so tokens issued before a restart still verify)
        // and holds the files clients read, the env file among them.
        let files = try FileManager.default.contentsOfDirectory(atPath: stateDirectory).sorted()
        #expect(files == ["aws-web-identity-token", "azure-federated-token", "env", "gcp-service-account-key.pem",
                          "gcp-service-account.json", "signing-key.pem"])
        var configuration = CloudEmulator.Configuration()
        configuration.stateDirectory = stateDirectory
        let restarted = try await CloudEmulator.start(configuration)
        await withCleanup {
            #expect(restarted.verify(token.token.reveal()).isValid)
        } cleanup: {
            try? await restarted.stop()
        }
    }

    @Test("emulate refuses a bad lifetime (exit 2) and a port in use (exit 1), saying which")
    func emulateBadInput() async throws {
        let lifetime = try await runCredagent(["emulate", "--token-ttl", "soon"])
        #expect(lifetime.status == 2)
        #expect(lifetime.stderr.contains("--token-ttl soon is not a duration"))

        let emulator = try await CloudEmulator.start()
        try await withCleanup {
            let busy = try await runCredagent(["emulate", "--aws", String(emulator.awsPort)])
            #expect(busy.status == 1)
            #expect(busy.stderr.contains("cannot listen on 127.0.0.1 ports aws \(emulator.awsPort)"))
            #expect(busy.stderr.contains("choose other ports"))
        } cleanup: {
            try? await emulator.stop()
        }
    }
}
