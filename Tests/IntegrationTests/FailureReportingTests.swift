import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What a hostile or broken upstream might echo in an error body: an AWS secret key, a request
/// signature, a private key, a Vault token and a password. None of it may leave the agent.
private let echoedSecrets = [
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
    "MIIEowIBAAKCAQEAx4fe", "hvs.CAESIJlWp3Ah7DXl1s3qXnDNpVJ6aAnkJT0Zc1tOx", "hunter2-is-the-password",
]
private let hostileText = "echo: SecretAccessKey=\(echoedSecrets[0]) X-Amz-Signature=\(echoedSecrets[1]) "
    + "-----BEGIN RSA PRIVATE KEY-----\n\(echoedSecrets[2])QWERTY\n-----END RSA PRIVATE KEY----- "
    + "token \(echoedSecrets[3]) password=\(echoedSecrets[4])"

/// Azure and GCP, on a socket anyone may connect to (reading secrets stays the agent's uid's).
private let config = emulatorAgentConfig(socket: [#"mode: "0666""#])

/// Failures are reported with a code from a closed set and our own message, end to end: in the
/// listing, 503 answers, metrics and logs, never with an upstream body's secrets.
@Suite(.serialized) struct FailureReportingTests {
    @Test(.enabled(if: getuid() == 0, "needs root to read the listing as nobody"))
    func hostileErrorBodiesReachNoOneAndFailuresCarryTheirCode() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        // Azure answers an OAuth error whose description echoes secrets; GCP's metadata server
        // answers plain text that does.
        let oauthError = try JSONSerialization.data(withJSONObject: ["error": "invalid_request", "error_description": hostileText])
        emulator.inject(.status(400, body: String(decoding: oauthError, as: UTF8.self)), at: .azureIMDSToken)
        emulator.inject(.status(403, body: hostileText), at: .gcpMetadataToken)
        let directory = try Peers.scratchDirectory("agent-hostile-bodies")
        chmod(directory, 0o755)
        let agent = try await AgentProcess(label: "agent-hostile", config: config, environment: cloudEnvironment(emulator),
                                           socketDirectory: directory)
        chmod((agent.directory as NSString).deletingLastPathComponent, 0o755)
        try await waitUntil("both credentials failed", timeout: 30) {
            let azure = try await agent.state("az-pg"), gcp = try await agent.state("gcp-redis")
            return azure == "failed" && gcp == "failed"
        }

        // What another local user reads: the listing, open to anyone who may connect.
        let listing = try await ChildProcess.run("/usr/bin/setpriv", [
            "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/curl", "-s", "--unix-socket", agent.socketPath,
            "http://localhost/v1/credentials"], environment: [:])
        let rows = (try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any])?["credentials"]
            as? [[String: Any]] ?? []
        let azure = try #require(rows.first { $0["name"] as? String == "az-pg" })
        let gcp = try #require(rows.first { $0["name"] as? String == "gcp-redis" })
        #expect(azure["last_error_code"] as? String == "rejected")
        #expect(gcp["last_error_code"] as? String == "rejected")
        // Our message and the documented OAuth error code remain.
        let azureError = try #require(azure["last_error"] as? String)
        #expect(azureError.contains("answered HTTP 400: invalid_request: echo: SecretAccessKey=<redacted>"), "\(azureError)")
        #expect(azureError.count < 400)
        #expect((gcp["last_error"] as? String)?.contains("HTTP 403") == true)

        // The 503 of an allowed client names the code too.
        let unavailable = try await agent.json("GET", "/v1/credentials/az-pg")
        #expect(unavailable.status == 503)
        let error = try #require(unavailable.body["error"] as? [String: Any])
        #expect(error["code"] as? String == "unavailable")
        #expect(error["last_error_code"] as? String == "rejected")
        let forced = try await agent.json("POST", "/v1/credentials/gcp-redis/refresh")
        #expect(forced.status == 503)
        #expect((forced.body["error"] as? [String: Any])?["code"] as? String == "refresh_failed")
        #expect((forced.body["error"] as? [String: Any])?["last_error_code"] as? String == "rejected")

        let table = try await runCredagent(["list", "--socket", agent.socketPath])
        #expect(table.stdout.contains("failed  0        -           [rejected] "), "\(table.stdout)")

        let metrics = try await agent.request("GET", "/metrics").bodyText
        #expect(metrics.contains(#"credagent_refresh_failures_total{credential="az-pg",reason="rejected"} "#), "\(metrics)")
        #expect(await agent.stop() == 0)
        let log = agent.log
        #expect(log.contains("error_code=rejected"))
        let seen = [("listing", listing.stdout), ("503", "\(unavailable.body)"), ("refresh 503", "\(forced.body)"),
                    ("metrics", metrics), ("log", log), ("credagent list", table.stdout)]
        for (place, text) in seen {
            for secret in echoedSecrets {
                #expect(!text.contains(secret), "\(place) holds \(secret)")
            }
        }
        try await emulator.stop()
    }

    @Test func anEndpointThatIsDownOrTooSlowIsToldApartFromARejectionAndRecovers() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        emulator.inject(.down, at: .gcpMetadataToken)
        // Past the metadata endpoints' 5 s limit.
        emulator.inject(.stall(seconds: 8), at: .azureIMDSToken)
        let agent = try await AgentProcess(label: "agent-down", config: config, environment: cloudEnvironment(emulator))
        try await waitUntil("both credentials failed", timeout: 40) {
            let azure = try await agent.state("az-pg"), gcp = try await agent.state("gcp-redis")
            return azure == "failed" && gcp == "failed"
        }
        let (_, listing) = try await agent.json("GET", "/v1/credentials")
        let rows = listing["credentials"] as? [[String: Any]] ?? []
        #expect(rows.first { $0["name"] as? String == "gcp-redis" }?["last_error_code"] as? String == "unavailable")
        #expect(rows.first { $0["name"] as? String == "az-pg" }?["last_error_code"] as? String == "timeout")
        emulator.clearFailures()
        try await waitUntil("gcp-redis recovered", timeout: 30) { try await agent.state("gcp-redis") == "valid" }
        let (_, recovered) = try await agent.json("GET", "/v1/credentials")
        let fresh = (recovered["credentials"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "gcp-redis" }
        #expect(fresh?["last_error_code"] is NSNull)
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }
}
