import ArgumentParser
import CredentialAgent
import Foundation

/// `credagent doctor [--config FILE] [--json]`: which identity each cloud resolves to and from
/// which link of its chain, the clock skew against its endpoint, and the permissions of the
/// config file and the socket. Never prints a secret. Exit 0 when nothing failed (warnings
/// allowed), 1 when a check failed, 2 for a config that cannot be read.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Show each cloud's identity and its source, clock skew, and the config's and socket's permissions.",
        discussion: "Without --config, every cloud with its default settings and the socket --socket names (with --config, the config's). Run it as the agent's user. Exit 1 when a check failed.")

    @Option(name: .long, help: "The agent's config: check the clouds it uses, with its settings, and its socket.")
    var config: String?

    @OptionGroup var socket: SocketPathOption

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    func run() async throws {
        var agentConfig: AgentConfig?
        if let config {
            do {
                agentConfig = try AgentConfig.load(path: config)
            } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                throw AgentExit.usage
            }
        }
        let report = await Doctor.examine(config: agentConfig, configPath: config,
                                          socketPath: agentConfig?.socket.path ?? socket.path,
                                          environment: ProcessInfo.processInfo.environment)
        print(json ? try report.json() : report.table(), terminator: json ? "\n" : "")
        if !report.ok { throw AgentExit.checkFailed }
    }
}
