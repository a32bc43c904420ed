import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing

/// `credagent health`, `wait` and `version` as processes, against the real agent binary.
@Suite(.serialized) struct ProbeCommandTests {
    @Test func healthAndWaitReportAnAgentThatIsNotThereWithExitCode3() async throws {
        let socket = try Peers.scratchDirectory("probe-absent") + "/agent.sock"
        let health = try await runCredagent(["health", "--socket", socket])
        #expect(health.status == 3)
        #expect(health.stderr.contains(socket))
        #expect(try await runCredagent(["health", "--ready", "--socket", socket]).status == 3)
        let wait = try await runCredagent(["wait", "--timeout", "600ms", "--socket", socket])
        #expect(wait.status == 3)
        #expect(wait.stderr.contains("no agent answers"))
    }

    @Test func healthAndWaitFollowACredentialFromFailingToServable() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        emulator.inject(.status(500, body: #"{"error":"internal"}"#), at: .azureIMDSToken)
        let agent = try await AgentProcess(label: "probe-agent", config: emulatorAgentConfig(backoffMax: "500ms"), environment: cloudEnvironment(emulator))
        func credagent(_ arguments: [String]) async throws -> ProcessResult {
            try await runCredagent(arguments + ["--socket", agent.socketPath])
        }

        let health = try await credagent(["health"])
        #expect(health.status == 0)
        #expect(health.stdout == "serving\n")
        #expect(try await credagent(["wait", "gcp-redis", "--timeout", "30s"]).status == 0)
        let notReady = try await credagent(["health", "--ready"])
        #expect(notReady.status == 1)
        #expect(notReady.stderr.contains("not ready: az-pg ("))
        #expect(!notReady.stderr.contains("gcp-redis"))

        let timedOut = try await credagent(["wait", "--timeout", "700ms"])
        #expect(timedOut.status == 1)
        #expect(timedOut.stderr.contains("still not servable after 700ms: az-pg ("))
        let unknown = try await credagent(["wait", "nosuch", "--timeout", "30s"])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("no credential named nosuch (it holds: az-pg, gcp-redis)"))
        #expect(try await credagent(["wait", "Not_A_Name"]).status == 2)
        #expect(try await credagent(["wait", "--timeout", "soon"]).stderr.contains("--timeout 'soon' is not a duration"))
        let tooLong = try await credagent(["wait", "--timeout", "1000000000000h"])
        #expect(tooLong.status == 2)
        #expect(tooLong.stderr.contains("is longer than 168h"))

        // A wait that is under way ends as soon as the identity recovers.
        async let waited = credagent(["wait", "az-pg", "gcp-redis", "--timeout", "60s"])
        try await Task.sleep(for: .milliseconds(500))
        emulator.clearFailure(at: .azureIMDSToken)
        let recovered = try await waited
        #expect(recovered.status == 0)
        #expect(recovered.stdout == "ready: az-pg, gcp-redis\n")
        let ready = try await credagent(["health", "--ready"])
        #expect(ready.status == 0)
        #expect(ready.stdout == "ready\n")

        #expect(await agent.stop() == 0)
        #expect(try await credagent(["health"]).status == 3)
        try await emulator.stop()
    }

    @Test func aBuildOtherThanTheShippedOneSaysDevelopment() async throws {
        let long = try await runCredagent(["version"])
        #expect(long.status == 0)
        let lines = long.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines.first?.hasPrefix("version: ") == true)
        #expect(lines.dropFirst().first?.hasPrefix("commit:  ") == true)
        #expect(lines.last?.hasPrefix("build:   ") == true)
        let short = try await runCredagent(["--version"])
        #expect(short.status == 0)
        #expect(short.stdout.hasPrefix("credagent "))
        // The binary under test is scripts/test's debug build unless CREDAGENT_BINARY names another.
        if Peers.env("CREDAGENT_BINARY")?.contains("/debug/") ?? true {
            #expect(long.stdout.contains("version: development\n"))
            #expect(long.stdout.contains("build:   debug, shared Swift runtime"))
            #expect(short.stdout == "credagent development (commit unknown, debug, shared Swift runtime)\n")
        }
    }
}
