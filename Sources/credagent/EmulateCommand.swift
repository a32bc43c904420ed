import ArgumentParser
import CloudAuth
import CloudEmulator
import Dispatch
import Foundation

/// `credagent emulate`: local AWS, Azure and GCP identity endpoints in the foreground, until SIGINT or
/// SIGTERM. Prints the environment that points clients at them, as `export` lines for `eval`.
struct EmulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emulate",
        abstract: "Run local AWS, Azure and GCP identity endpoints (for development and tests).")

    @Option(help: "AWS port (EC2 IMDSv2, container credentials); 0 picks a free one.") var aws = 0
    @Option(help: "Azure port (IMDS, App Service, Entra); 0 picks a free one.") var azure = 0
    @Option(help: "GCP port (metadata server, OAuth token endpoint); 0 picks a free one.") var gcp = 0
    @Option(help: "Lifetime of issued tokens in seconds.") var tokenLifetime = 3600
    @Option(help: "Write a service account key file for the emulated account here.") var writeGcpKey: String?
    @Option(help: "Write a workload identity federated token here.") var writeFederatedToken: String?

    func run() async throws {
        guard [aws, azure, gcp].allSatisfy({ (0...65535).contains($0) }) else {
            throw OneShot.usageError("--aws, --azure and --gcp take a port from 0 to 65535")
        }
        guard tokenLifetime > 0 else { throw OneShot.usageError("--token-lifetime must be positive") }
        var configuration = CloudEmulator.Configuration()
        configuration.awsPort = aws
        configuration.azurePort = azure
        configuration.gcpPort = gcp
        configuration.tokenLifetime = TimeInterval(tokenLifetime)
        let emulator: CloudEmulator
        do {
            emulator = try await CloudEmulator.start(configuration)
        } catch {
            FileHandle.standardError.write(Data("credagent: cannot listen on \(configuration.host) ports \(aws), \(azure) and \(gcp): \(error)\n".utf8))
            throw ExitCode(1)
        }
        do {
            if let path = writeGcpKey { try emulator.writeServiceAccountKey(to: path) }
            if let path = writeFederatedToken { try emulator.writeFederatedToken(to: path) }
        } catch {
            try? await emulator.stop()
            FileHandle.standardError.write(Data("credagent: \(error)\n".utf8))
            throw ExitCode(2)
        }
        // Unbuffered, so that a parent reading the pipe sees the addresses at once.
        FileHandle.standardOutput.write(Data((environmentText(emulator) + "\n").utf8))
        await Self.waitForTermination()
        try await emulator.stop()
    }

    private func environmentText(_ emulator: CloudEmulator) -> String {
        func exports(_ variables: [String: String]) -> [String] {
            variables.sorted { $0.key < $1.key }.map { "export \($0.key)=\($0.value)" }
        }
        func commented(_ variables: [String: String]) -> [String] { exports(variables).map { "#   " + $0 } }
        var lines = ["# EC2 (IMDSv2):"] + exports(emulator.environment(for: .awsIMDS))
        lines += ["# ECS / EKS Pod Identity (takes precedence over IMDS when set):"]
            + commented(emulator.environment(for: .awsContainer))
        lines += ["# Azure VM (IMDS):"] + exports(emulator.environment(for: .azureIMDS))
        lines += ["# GCE (metadata server):"] + exports(emulator.environment(for: .gcpMetadata))
        if let path = writeGcpKey {
            lines += ["# GCP service account key file (takes precedence over the metadata server):"]
                + exports(emulator.environment(for: .gcpKeyFile(path: path)))
        }
        lines += ["# App Service (takes precedence over IMDS when set):"] + commented(emulator.environment(for: .azureAppService))
        if let path = writeFederatedToken {
            lines += ["# AKS workload identity (takes precedence over both):"]
                + commented(emulator.environment(for: .azureWorkloadIdentity(tokenFile: path)))
        }
        lines += [
            "# azure-identity (Python) reads the IMDS override from AZURE_POD_IDENTITY_AUTHORITY_HOST:",
            "#   export AZURE_POD_IDENTITY_AUTHORITY_HOST=\(emulator.azureBaseURL)",
            "# OIDC issuers (discovery at ISSUER/.well-known/openid-configuration):",
            "#   azure \(emulator.azureIssuer)",
            "#   gcp   \(emulator.gcpIssuer)",
        ]
        return lines.joined(separator: "\n")
    }

    /// Returns when the process receives SIGINT or SIGTERM.
    private static func waitForTermination() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let queue = DispatchQueue(label: "credagent.emulate.signals")
            let resumed = SignalLatch(continuation)
            for number in [SIGINT, SIGTERM] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                source.setEventHandler { resumed.fire() }
                source.resume()
                resumed.keep(source)
            }
        }
    }
}

/// Resumes a continuation once, from whichever signal arrives first, and keeps the signal sources
/// alive meanwhile. Touched only on its serial queue after setup.
private final class SignalLatch: @unchecked Sendable {
    private var continuation: CheckedContinuation<Void, Never>?
    private var sources: [any DispatchSourceSignal] = []

    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }

    func keep(_ source: any DispatchSourceSignal) { sources.append(source) }

    func fire() {
        continuation?.resume()
        continuation = nil
    }
}
