import ArgumentParser
import CredentialAgent
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// `credagent run`: the sidecar.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the agent: obtain, refresh and serve credentials on the Unix socket.",
        discussion: "SIGTERM or SIGINT stop it gracefully; SIGHUP reloads the config file.")

    @Option(name: .long, help: "The config file.") var config = AgentConfig.defaultPath
    @Option(name: .long, help: "Log line format: logfmt or json.") var logFormat = "logfmt"
    @Option(name: .long, help: "Lowest level logged: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func validate() throws {
        guard AgentLogHandler.Format(rawValue: logFormat) != nil else {
            throw ValidationError("--log-format must be logfmt or json")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        // Lines still queued for stderr are written before the process exits.
        defer { LogWriter.standardError.flush() }
        let format = AgentLogHandler.Format(rawValue: logFormat) ?? .logfmt
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let logger = Logger(label: "credagent") { AgentLogHandler(label: $0, format: format, level: level) }
        let agent: Agent
        do {
            let loaded = try AgentConfig.load(path: config, trusting: getuid())
            agent = try Agent(config: loaded, configPath: config, logger: logger)
            try await agent.startListening()
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw AgentExit.usage
        }
        var services: [any Service] = [agent]
        // Under systemd (Type=notify) the notifier runs after the agent, so it is told to stop first.
        if let settings = SystemdNotifier.Settings(environment: ProcessInfo.processInfo.environment) {
            services.append(SystemdNotifier(settings: settings, store: agent.store, logger: logger))
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("agent failed", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
    }
}
