import ArgumentParser
import CredentialAgent
import Foundation

/// `--socket`, shared by the commands that talk to a running agent.
struct SocketOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The agent's socket.",
                                            discussion: "Default: $CREDAGENT_SOCKET, else /run/credagent/agent.sock."))
    var socket: String?

    var client: AgentClient { AgentClient(socketPath: socket ?? AgentClient.defaultSocketPath()) }
}

/// Exit codes of the CLI (DESIGN section 6).
enum AgentExit {
    static let checkFailed = ExitCode(1)
    static let usage = ExitCode(2)
    static let unreachable = ExitCode(3)

    /// Prints `error` and returns the exit code that fits it.
    static func report(_ error: any Error) -> ExitCode {
        FileHandle.standardError.write(Data("credagent: \(error)\n".utf8))
        if let error = error as? AgentClientError {
            if error.unreachable { return unreachable }
            return error.code == "invalid_name" ? usage : checkFailed
        }
        return checkFailed
    }
}
