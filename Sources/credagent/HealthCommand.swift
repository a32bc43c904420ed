import ArgumentParser
import CredentialAgent
import Foundation

/// `credagent health [--ready]`: a probe for Kubernetes and scripts. Exit 0 while the agent
/// serves (with `--ready`: while every credential is servable), 1 when not ready, 3 when no
/// agent answers.
struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Exit 0 when the agent serves; with --ready, when every credential is servable.",
        discussion: "For liveness (health) and startup or readiness (health --ready) probes. Exit 1 when not ready, 3 when no agent answers.")

    @Flag(name: .long, help: "Require every credential to be servable, not only the socket to answer.")
    var ready = false

    @OptionGroup var socket: SocketOptions

    func run() async throws {
        try await Self.check(ready: ready, client: try socket.sequentialClient)
    }

    /// Asks the agent behind `client` whether it serves (is ready, with `ready`) and prints the
    /// answer; the same for this command and its plain form (``PlainCommandLine``).
    static func check(ready: Bool, client: AgentClient) async throws {
        do {
            if ready {
                try await client.ready()
            } else {
                try await client.health()
            }
        } catch let error as AgentClientError where error.status == 503 && ready {
            // Which credentials hold it back, and why: one more request, only when not ready.
            let waiting = (try? await client.list()).map { CredentialReadiness.notServable($0, names: []) } ?? []
            FileHandle.standardError.write(Data(("credagent: not ready: " + CredentialReadiness.describe(waiting) + "\n").utf8))
            throw AgentExit.checkFailed
        } catch {
            throw AgentExit.report(error)
        }
        print(ready ? "ready" : "serving")
    }
}

/// Which credentials of a listing can be served now, for `health --ready` and `wait`.
enum CredentialReadiness {
    /// The states in which the agent hands out a secret.
    static let servableStates: Set<String> = ["valid", "refreshing", "stale"]

    /// The rows among `names` (every row when `names` is empty) that cannot be served now.
    static func notServable(_ rows: [CredentialSummary], names: [String]) -> [CredentialSummary] {
        let wanted = Set(names)
        return rows.filter { (names.isEmpty || wanted.contains($0.name)) && !servableStates.contains($0.state) }
    }

    /// `names` that the listing does not hold.
    static func unknown(_ names: [String], in rows: [CredentialSummary]) -> [String] {
        let known = Set(rows.map(\.name))
        return names.filter { !known.contains($0) }
    }

    /// `orders-db (pending), sessions (failed: <last error>)`.
    static func describe(_ rows: [CredentialSummary]) -> String {
        guard !rows.isEmpty else { return "the agent did not say which credentials" }
        return rows.map { row in
            "\(row.name) (\(row.state)" + (row.lastError.map { ": " + String($0.prefix(200)) } ?? "") + ")"
        }.joined(separator: ", ")
    }
}
