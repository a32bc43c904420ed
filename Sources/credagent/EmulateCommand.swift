import ArgumentParser
import CloudAuth
import CloudEmulator
import CredentialAgent
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// `credagent emulate`: local AWS, Azure and GCP identity endpoints in the foreground, until SIGINT or
/// SIGTERM. Prints the environment that points clients at them, as `export` lines for `eval`.
struct EmulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emulate",
        abstract: "Run local AWS, Azure and GCP identity endpoints (for development, tests and demos).",
        discussion: """
            Each cloud gets one loopback port serving all of its endpoints: AWS the EC2 IMDSv2 paths, the \
            container credentials path and STS at /; Azure IMDS, App Service and Entra ID; GCP the metadata \
            server and the OAuth token endpoint. Every port also serves /emulator/verify (check a token the \
            emulator's keys made), /emulator/faults (inject failures) and /emulator/requests. See docs/EMULATOR.md.
            """)

    @Option(help: "AWS port (EC2 IMDSv2, container credentials, STS); 0 picks a free one.") var aws = 0
    @Option(help: "Azure port (IMDS, App Service, Entra ID); 0 picks a free one.") var azure = 0
    @Option(help: "GCP port (metadata server, OAuth token endpoint); 0 picks a free one.") var gcp = 0
    @Option(help: "Lifetime of issued tokens and keys: 90s, 5m, 1h.") var tokenTTL = "1h"
    @Option(help: "Keep the signing keys here across restarts and write the client files (key file, projected tokens) and an env file; default: a temporary directory removed on exit.")
    var stateDir: String?

    func run() async throws {
        guard [aws, azure, gcp].allSatisfy({ (0...65535).contains($0) }) else {
            throw OneShot.usageError("--aws, --azure and --gcp take a port from 0 to 65535")
        }
        guard let lifetime = DurationText.duration(tokenTTL)?.timeInterval ?? Double(tokenTTL), (1...43_200).contains(lifetime) else {
            throw OneShot.usageError("--token-ttl \(tokenTTL) is not a duration from 1s to 12h (examples: 90s, 5m, 1h)")
        }
        var configuration = CloudEmulator.Configuration()
        configuration.awsPort = aws
        configuration.azurePort = azure
        configuration.gcpPort = gcp
        configuration.tokenLifetime = lifetime
        // The group traps SIGINT and SIGTERM before the service makes anything, so that a signal at
        // any point still ends in the service's cleanup.
        let service = EmulatorService(configuration: configuration, stateDirectory: stateDir)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [service], gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [],
            logger: Logger(label: "credagent.emulate", factory: { _ in SwiftLogNoOpLogHandler() })))
        try await group.run()
    }
}

/// The emulator for the length of a service group's run: makes the state directory (a temporary
/// one, removed on every way out, unless `--state-dir` names one), listens, prints the environment
/// that points clients at it, rewrites the projected token files as the kubelet would, and stops on
/// graceful shutdown.
private struct EmulatorService: Service {
    var configuration: CloudEmulator.Configuration
    var stateDirectory: String?

    /// How often the client files (projected tokens) are written anew; well within their lifetime.
    static let clientFileRotation: Duration = .seconds(600)

    func run() async throws {
        let directory: String
        if let stateDirectory {
            directory = URL(fileURLWithPath: stateDirectory).standardizedFileURL.path
        } else {
            var template = Array((NSTemporaryDirectory() + "credagent-emulator-XXXXXX").utf8CString)
            guard let made = mkdtemp(&template) else {
                throw OneShot.failure("cannot create a temporary state directory (errno \(errno)); give one with --state-dir", exitCode: 1)
            }
            directory = String(cString: made)
        }
        // The temporary directory holds private keys: it goes on every way out.
        defer { if stateDirectory == nil { try? FileManager.default.removeItem(atPath: directory) } }

        var configuration = configuration
        configuration.stateDirectory = directory
        let emulator: CloudEmulator
        do {
            emulator = try CloudEmulator(configuration: configuration)
        } catch {
            throw OneShot.failure("cannot use the state directory \(directory): \(error)", exitCode: 2)
        }
        do {
            try await emulator.start()
        } catch {
            throw OneShot.failure("cannot listen on \(configuration.host) ports aws \(configuration.awsPort), azure "
                                  + "\(configuration.azurePort), gcp \(configuration.gcpPort) (\(error)); choose other ports, "
                                  + "or 0 for free ones", exitCode: 1)
        }
        let text = environmentText(emulator)
        let envFile = directory + "/env"
        guard FileManager.default.createFile(atPath: envFile, contents: Data((text + "\n").utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            try? await emulator.stop()
            throw OneShot.failure("cannot write \(envFile)", exitCode: 1)
        }
        // Unbuffered, so that a parent reading the pipe sees the addresses at once.
        FileHandle.standardOutput.write(Data((text + "\n# (also in \(envFile))\n").utf8))
        // The kubelet rewrites projected tokens well before they expire; so does the emulator.
        while (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: Self.clientFileRotation) })) != nil {
            try? emulator.writeClientFiles()
        }
        try await emulator.stop()
    }

    private func environmentText(_ emulator: CloudEmulator) -> String {
        func exports(_ variables: [String: String]) -> [String] {
            variables.sorted { $0.key < $1.key }.map { "export \($0.key)=\($0.value)" }
        }
        func commented(_ variables: [String: String]) -> [String] { exports(variables).map { "#   " + $0 } }
        var lines = ["# EC2 (IMDSv2; STS on the same port):"] + exports(emulator.environment(for: .awsIMDS))
        if let path = emulator.awsWebIdentityTokenFile {
            lines += ["# EKS IAM roles for service accounts (takes precedence over the container endpoint and IMDS):"]
                + commented(emulator.environment(for: .awsWebIdentity(tokenFile: path)))
        }
        lines += ["# ECS / EKS Pod Identity (takes precedence over IMDS when set):"]
            + commented(emulator.environment(for: .awsContainer))
        lines += ["# Azure VM (IMDS):"] + exports(emulator.environment(for: .azureIMDS))
        lines += ["# App Service (takes precedence over IMDS when set):"] + commented(emulator.environment(for: .azureAppService))
        if let path = emulator.azureFederatedTokenFile {
            lines += ["# AKS workload identity (takes precedence over both):"]
                + commented(emulator.environment(for: .azureWorkloadIdentity(tokenFile: path)))
        }
        lines += ["# GCE (metadata server):"] + exports(emulator.environment(for: .gcpMetadata))
        if let path = emulator.serviceAccountKeyFile {
            lines += ["# GCP service account key file (takes precedence over the metadata server):"]
                + commented(emulator.environment(for: .gcpKeyFile(path: path)))
        }
        lines += [
            "# azure-identity (Python) reads the IMDS override from AZURE_POD_IDENTITY_AUTHORITY_HOST:",
            "#   export AZURE_POD_IDENTITY_AUTHORITY_HOST=\(emulator.azureBaseURL)",
            "# OIDC issuers (discovery at ISSUER/.well-known/openid-configuration):",
            "#   azure \(emulator.azureIssuer)",
            "#   gcp   \(emulator.gcpIssuer)",
            "#   kubernetes \(emulator.kubernetesIssuer)",
            "# Verify a token: curl -d '{\"token\": \"...\", \"host\": \"...\", \"user\": \"...\"}' \(emulator.awsBaseURL)/emulator/verify",
        ]
        return lines.joined(separator: "\n")
    }
}
