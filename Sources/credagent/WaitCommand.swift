import ArgumentParser
import CredentialAgent
import CredentialModel
import Foundation

/// `credagent wait [NAME...] [--timeout 60s]`: blocks until the named credentials (default: all)
/// are servable, for init steps and scripts that start beside the agent.
struct WaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Wait until credentials are servable (default: every credential).",
        discussion: """
            Exit 0 once they are, 1 at the timeout (or at once for a name the agent does not hold), \
            3 when no agent answered until the timeout. An agent that is not up yet is waited for.
            """)

    @Argument(help: "Credential names; none: every credential.") var names: [String] = []

    @Option(name: .long, help: "How long to wait: 500ms, 60s, 5m.") var timeout = "60s"

    @OptionGroup var socket: SocketOptions

    /// The longest `--timeout` taken (a week).
    static let longestTimeout: Duration = .seconds(7 * 24 * 3600)

    /// How often the agent is asked again.
    static let pollInterval: Duration = .milliseconds(200)

    func validate() throws {
        for name in names where !CredentialName.isValid(name) {
            throw ValidationError("'\(name)' is not a credential name ([a-z0-9][a-z0-9._-]{0,62})")
        }
        guard let duration = DurationText.duration(timeout), duration > .zero else {
            throw ValidationError("--timeout '\(timeout)' is not a duration such as 500ms, 60s or 5m")
        }
        guard duration <= Self.longestTimeout else {
            throw ValidationError("--timeout '\(timeout)' is longer than \(DurationText.format(Self.longestTimeout)); wait at most that")
        }
    }

    func run() async throws {
        let client = try socket.client
        let clock = ContinuousClock()
        let deadline = clock.now + (DurationText.duration(timeout) ?? .seconds(60))
        var lastFailure: AgentClientError?
        var waiting: [CredentialSummary] = []
        while true {
            do {
                let rows = try await client.list()
                let unknown = CredentialReadiness.unknown(names, in: rows)
                guard unknown.isEmpty else {
                    let held = rows.map(\.name).joined(separator: ", ")
                    FileHandle.standardError.write(Data(
                        "credagent: the agent holds no credential named \(unknown.joined(separator: ", ")) (it holds: \(held.isEmpty ? "none" : held))\n".utf8))
                    throw AgentExit.checkFailed
                }
                waiting = CredentialReadiness.notServable(rows, names: names)
                lastFailure = nil
                if waiting.isEmpty {
                    print("ready: " + (names.isEmpty ? "every credential" : names.joined(separator: ", ")))
                    return
                }
            } catch let error as AgentClientError {
                lastFailure = error
            }
            let remaining = deadline - clock.now
            guard remaining > .zero else { break }
            try await Task.sleep(for: min(Self.pollInterval, remaining))
        }
        if let lastFailure {
            throw AgentExit.report(lastFailure)
        }
        FileHandle.standardError.write(Data(
            "credagent: still not servable after \(timeout): \(CredentialReadiness.describe(waiting))\n".utf8))
        throw AgentExit.checkFailed
    }
}
