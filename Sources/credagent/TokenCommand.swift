import ArgumentParser

/// `credagent token ...`: one-shot credentials, no daemon.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Obtain one credential now and print it (no daemon).",
        subcommands: [
            TokenRDSCommand.self, TokenElastiCacheCommand.self, TokenMemoryDBCommand.self, TokenVaultAWSCommand.self,
            TokenAzureCommand.self, TokenGCPCommand.self, TokenVaultCommand.self,
        ]
    )
}
