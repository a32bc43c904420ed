import ArgumentParser
import CredentialAgent
import Foundation

/// `credagent config ...`: configuration tools.
struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with agent config files.", subcommands: [ConfigCheckCommand.self])
}

/// `credagent config check FILE`: validates a config file without starting anything.
struct ConfigCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check a config file; print every problem found.",
        discussion: "Exit 0 when valid, 2 when not (a sink that could not be written on this machine counts).")

    @Argument(help: "The config file.") var file: String

    func run() async throws {
        do {
            let config = try AgentConfig.load(path: file)
            let sinkIssues = config.sinkIssues()
            guard sinkIssues.isEmpty else { throw ConfigError(file: file, issues: sinkIssues) }
            print("\(file): valid, \(config.credentials.count) credential\(config.credentials.count == 1 ? "" : "s")")
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw AgentExit.usage
        }
    }
}
