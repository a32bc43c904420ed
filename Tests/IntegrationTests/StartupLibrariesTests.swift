import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing

/// The commands that probes and scripts run once per use load no C library they do not use:
/// libcurl (and the thirty-odd libraries it depends on), libpq, hiredis and OpenSSL are loaded on
/// first use. The dynamic loader's own trace (`LD_DEBUG=libs`) says what each process initialised.
@Suite struct StartupLibrariesTests {
    static let deferred = ["libcurl.so", "libpq.so", "libhiredis.so", "libssl.so", "libcrypto.so"]

    /// The libraries among ``deferred`` that the run whose loader trace is `stderr` initialised.
    static func deferredLibrariesLoaded(_ stderr: String) -> [String] {
        let initialised = stderr.split(separator: "\n").filter { $0.contains("calling init:") }
        return deferred.filter { library in initialised.contains { $0.contains(library) } }
    }

    @Test func oneShotCommandsLoadOnlyTheLibrariesTheyUse() async throws {
        let fixture = try await EmulatedAgent(label: "startup-libraries", config: emulatorAgentConfig())
        try await withCleanup {
            try await waitUntil("every credential is servable", timeout: 30) {
                (try? await fixture.agent.request("GET", "/v1/ready"))?.status == 200
            }
            let trace = ["LD_DEBUG": "libs", "CREDAGENT_SOCKET": fixture.agent.socketPath]
            let aws = ["AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                       "AWS_REGION": "us-east-1"]
            // Each command, and the deferred libraries it is expected to load.
            let commands: [([String], [String: String], [String])] = [
                (["--version"], trace, []),
                (["health"], trace, []),
                (["health", "--ready"], trace, []),
                (["get", "az-pg", "--field", "password"], trace, []),
                (["list"], trace, []),
                // Signs with HMAC-SHA256, which is compiled in (swift-crypto).
                (["token", "rds", "--host", "db.example", "--port", "5432", "--user", "kong"], trace.merging(aws) { $1 }, []),
                // Fetches over HTTP(S): libcurl, which loads OpenSSL for its TLS.
                (["token", "azure", "--resource", "postgres"],
                 fixture.emulator.environment(for: .azureIMDS).merging(trace) { $1 },
                 ["libcurl.so", "libssl.so", "libcrypto.so"]),
            ]
            for (arguments, environment, expected) in commands {
                let result = try await runCredagent(arguments, environment: environment)
                #expect(result.status == 0, "\(arguments): \(result.stderr.suffix(500))")
                #expect(result.stderr.contains("calling init:"), "the loader trace is missing: \(arguments)")
                #expect(Self.deferredLibrariesLoaded(result.stderr) == expected,
                        "\(arguments) loaded \(Self.deferredLibrariesLoaded(result.stderr))")
            }
        } cleanup: {
            await fixture.stop()
        }
    }
}
