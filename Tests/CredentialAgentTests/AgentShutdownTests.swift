import CloudAuth
import Foundation
import Logging
import ServiceLifecycleTestKit
import Testing
import CredentialAgent

/// The agent as a lifecycle `Service`, run in process: a graceful shutdown ends `run()` and takes
/// the socket away.
@Suite struct AgentShutdownTests {
    @Test func aGracefulShutdownStopsServingAndRemovesTheSocket() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("credagent-shutdown-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socketPath = directory + "/agent.sock"
        // The credential's source fails (no AWS identity): the agent still serves its health route.
        let config = try ConfigParser.parse(yaml: """
            socket: {path: \(socketPath)}
            credentials:
              - {name: orders-db, kind: postgres, provider: aws, host: db.example, port: 5432, user: kong, database: kong}
            """, file: "agent.yaml", environment: [:])
        let agent = try Agent(config: config, configPath: directory + "/agent.yaml",
                              logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                              environment: ["AWS_EC2_METADATA_DISABLED": "true"])
        let health = HTTPRequest(method: "GET", url: "http://localhost/v1/health",
                                 timeouts: HTTPTimeouts(connect: 2, total: 5), unixSocketPath: socketPath)

        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup { group in
                group.addTask { try await agent.run() }
                var answered = false
                for _ in 0..<100 where !answered {
                    answered = (try? await CurlHTTPClient().execute(health))?.status == 200
                    if !answered { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(answered, "the agent answers /v1/health before the shutdown")

                trigger.triggerGracefulShutdown()
                try await group.next()
                #expect(!FileManager.default.fileExists(atPath: socketPath), "the socket file is removed")
                await #expect(throws: (any Error).self, "nothing answers on the socket any more") {
                    try await CurlHTTPClient().execute(health)
                }
            }
        }
    }
}
