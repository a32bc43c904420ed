import ArgumentParser
import CloudAuth
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
        get throws { try Self.client(socket: socketPath.socket, serverUID: serverUID) }
    }

    /// The uid the agent runs as when it is neither root nor the caller: `--server-uid`, else
    /// `$CREDAGENT_SERVER_UID`; one that names no one is reported and exits 2.
    var agentUID: UInt32? {
        get throws { try Self.agentUID(serverUID) }
    }

    /// ``client`` for a command that sends its requests one at a time and does nothing else
    /// meanwhile (`health`, `get`, `list`): each request runs on the command's own thread.
    var sequentialClient: AgentClient {
        get throws { try Self.sequentialClient(socket: socketPath.socket, serverUID: serverUID) }
    }

    /// ``sequentialClient`` for the values of `--socket` and `--server-uid` (nil when not given).
    static func sequentialClient(socket: String?, serverUID: String?) throws -> AgentClient {
        try client(socket: socket, serverUID: serverUID, http: UnixSocketHTTPClient(threading: .callingThread))
    }

    private static func client(socket: String?, serverUID: String?,
                               http: any HTTPClient = UnixSocketHTTPClient()) throws -> AgentClient {
        AgentClient(socketPath: socket ?? AgentClient.defaultSocketPath(), serverUID: try agentUID(serverUID), http: http)
    }

    private static func agentUID(_ serverUID: String?) throws -> UInt32? {
        do {
            return try serverUID.map { try AgentClient.serverUID(parsing: $0, from: "--server-uid") }
                ?? AgentClient.defaultServerUID()
        } catch {
            throw AgentExit.report(error)
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
