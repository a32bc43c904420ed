import ArgumentParser

/// The `credagent` command: the sidecar and its tools, one binary.
@main
struct CredAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credagent",
        abstract: "Short-lived cloud credentials for gateways, served over a Unix socket.",
        subcommands: [
            TokenCommand.self,
            RunCommand.self,
            GetCommand.self,
            ListCommand.self,
            ConfigCommand.self,
            EmulateCommand.self,
            TestCommand.self,
        ]
    )
}
