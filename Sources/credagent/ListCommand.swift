import ArgumentParser
import CloudAuth
import CredentialAgent
import Foundation

/// `credagent list`: the state of every credential of a running agent, no secrets.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Show every credential of the running agent and its state.")

    @OptionGroup var socket: SocketOptions

    func run() async throws {
        let client = try socket.sequentialClient
        let rows: [CredentialSummary]
        do {
            rows = try await client.list()
        } catch {
            throw AgentExit.report(error)
        }
        print(Self.table(rows, now: Date()))
    }

    static func table(_ rows: [CredentialSummary], now: Date) -> String {
        let header = ["NAME", "KIND", "PROVIDER", "STATE", "VERSION", "EXPIRES IN", "LAST ERROR"]
        let lines = rows.map { row -> [String] in
            let expiresIn = row.expiresAt.flatMap(Timestamp.parse).map { Self.duration($0.timeIntervalSince(now)) } ?? "-"
            return [row.name, row.kind, row.provider, row.state, String(row.version), expiresIn,
                    row.lastError.map { message in
                        String(((row.lastErrorCode.map { "[\($0)] " } ?? "") + message).prefix(80))
                    } ?? ""]
        }
        let widths = header.indices.map { column in ([header] + lines).map { $0[column].count }.max() ?? 0 }
        return ([header] + lines).map { cells in
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
    }

    /// `14m 05s`, `2h 03m`, `expired`.
    static func duration(_ seconds: TimeInterval) -> String {
        guard seconds > 0 else { return "expired" }
        let total = Int(seconds)
        if total >= 3600 { return String(format: "%dh %02dm", total / 3600, (total % 3600) / 60) }
        if total >= 60 { return String(format: "%dm %02ds", total / 60, total % 60) }
        return "\(total)s"
    }
}
