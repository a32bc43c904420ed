import ArgumentParser
import CloudAuth
import CloudEmulator
import CredentialAgent
import Dispatch
import Foundation

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
        // Caught from the start, so that a signal at any point still ends in the cleanup below.
        let signals = TerminationSignals()
        guard [aws, azure, gcp].allSatisfy({ (0...65535).contains($0) }) else {
            throw OneShot.usageError("--aws, --azure and --gcp take a port from 0 to 65535")
        }
        guard let lifetime = DurationText.seconds(tokenTTL) ?? Double(tokenTTL), (1...43_200).contains(lifetime) else {
            throw OneShot.usageError("--token-ttl \(tokenTTL) is not a duration from 1s to 12h (examples: 90s, 5m, 1h)")
        }
        let directory: String
        if let stateDir {
            directory = URL(fileURLWithPath: stateDir).standardizedFileURL.path
        } else {
            var template = Array((NSTemporaryDirectory() + "credagent-emulator-XXXXXX").utf8CString)
            guard let made = mkdtemp(&template) else {
                throw OneShot.failure("cannot create a temporary state directory (errno \(errno)); give one with --state-dir", exitCode: 1)
            }
            directory = String(cString: made)
        }
        // The temporary directory holds private keys: it goes on every way out.
        defer { if stateDir == nil { try? FileManager.default.removeItem(atPath: directory) } }

        var configuration = CloudEmulator.Configuration()
        configuration.awsPort = aws
        configuration.azurePort = azure
        configuration.gcpPort = gcp
        configuration.tokenLifetime = lifetime
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
            throw OneShot.failure("cannot listen on \(configuration.host) ports aws \(aws), azure \(azure), gcp \(gcp) "
                                  + "(\(error)); choose other ports, or 0 for free ones", exitCode: 1)
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
        await withDiscardingTaskGroup { group in
            // The kubelet rewrites projected tokens well before they expire; so does the emulator.
            group.addTask {
                while (try? await Task.sleep(for: .seconds(600))) != nil {
                    try? emulator.writeClientFiles()
                }
            }
            await signals.wait()
            group.cancelAll()
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

/// SIGINT and SIGTERM, caught from the moment this exists (the default action would end the
/// process without its cleanup): ``wait()`` returns once either has arrived. State is touched
/// only on its serial queue.
private final class TerminationSignals: @unchecked Sendable {
    private let queue = DispatchQueue(label: "credagent.emulate.signals")
    private var sources: [any DispatchSourceSignal] = []
    private var arrived = false
    private var waiter: CheckedContinuation<Void, Never>?

    init() {
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [unowned self] in
                arrived = true
                waiter?.resume()
                waiter = nil
            }
            source.resume()
            sources.append(source)
        }
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                if self.arrived { continuation.resume() } else { self.waiter = continuation }
            }
        }
    }
}
