import ArgumentParser
import CredentialAgent
import Foundation

/// `--socket`, shared by the commands that name the agent's socket.
struct SocketPathOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The agent's socket.",
                                            discussion: "Default: $CREDAGENT_SOCKET, else /run/credagent/agent.sock."))
    var socket: String?

    /// The socket given, else the default one.
    var path: String { socket ?? AgentClient.defaultSocketPath() }
}

/// `--socket` and `--server-uid`, shared by the commands that talk to a running agent.
struct SocketOptions: ParsableArguments {
    @OptionGroup var socketPath: SocketPathOption

    @Option(name: .long, help: ArgumentHelp(
        "The uid (or user name) the agent runs as, when it is neither root nor your own.",
        discussion: "Default: $CREDAGENT_SERVER_UID. A socket served by any other uid is refused."))
    var serverUID: String?

    /// The client for the chosen socket, trusting root, the caller's uid and the server uid
    /// given; a server uid that names no one is reported and exits 2.
    var client: AgentClient {
        get throws { AgentClient(socketPath: socketPath.path, serverUID: try agentUID) }
    }

    /// The uid the agent runs as when it is neither root nor the caller: `--server-uid`, else
    /// `$CREDAGENT_SERVER_UID`; one that names no one is reported and exits 2.
    var agentUID: UInt32? {
        get throws {
            do {
                return try serverUID.map { try AgentClient.serverUID(parsing: $0, from: "--server-uid") }
                    ?? AgentClient.defaultServerUID()
            } catch {
                throw AgentExit.report(error)
            }
        }
    }
}

/// Exit codes of the CLI (docs/OPERATIONS.md, "Running").
enum AgentExit {
    static let checkFailed = ExitCode(1)
    static let usage = ExitCode(2)
    static let unreachable = ExitCode(3)

    /// Prints `error` and returns the exit code that fits it.
    static func report(_ error: any Error) -> ExitCode {
        FileHandle.standardError.write(Data("credagent: \(error)\n".utf8))
        if let error = error as? AgentClientError {
            if error.unreachable { return unreachable }
            return ["invalid_name", "invalid_server_uid"].contains(error.code) ? usage : checkFailed
        }
        return checkFailed
    }
}
