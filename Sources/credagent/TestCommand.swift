import ArgumentParser
import CloudAuth
import Connectivity
import CredentialAgent
import CredentialModel
import Foundation

/// `credagent test NAME|--all`: fetch credentials (from the running agent, or directly with
/// --config), connect to each server with them, and report.
struct TestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Check that credentials open a connection to their server.",
        discussion: """
            Fetches each credential from the running agent (or, with --config, obtains it directly \
            without an agent), then connects: PostgreSQL runs SELECT current_user, Redis sends AUTH \
            and PING, Vault looks the token up. With --via-proxy it connects through the \
            credential's local proxy instead, with no secret (with --config, none is obtained). \
            Prints a table, or JSON with --json. Exit codes: 0 every check passed, 1 a check \
            failed, 2 usage or config error, 3 no agent answers.
            """)

    @Argument(help: "The credential to check.") var name: String?
    @Flag(help: "Check every credential.") var all = false
    @OptionGroup var socket: SocketOptions
    @Option(help: "Obtain credentials directly as this agent config describes, without a running agent.")
    var config: String?
    @Option(name: .customLong("ca-file"),
            help: ArgumentHelp("CA bundle to verify the servers' certificates with.",
                               discussion: "Over the socket it takes the place of the ca_file the agent's answer names; with --config it serves credentials without ca_file. Without either, the system store verifies."))
    var caFile: String?
    @Flag(name: .customLong("via-proxy"), help: "Connect through the credential's local proxy (its proxy: block), without a secret.")
    var viaProxy = false
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() async throws {
        guard (name == nil) == all else {
            throw OneShot.usageError(all ? "give a credential NAME or --all, not both" : "give a credential NAME or --all")
        }
        if config != nil, socket.socketPath.socket != nil {
            throw OneShot.usageError("--config checks without an agent; it does not combine with --socket")
        }
        let reports: [ProbeReport]
        if let config {
            reports = try await directReports(config)
        } else {
            reports = try await agentReports()
        }
        print(json ? ProbeReport.json(reports) : ProbeReport.table(reports), terminator: "")
        if !reports.allSatisfy(\.ok) { throw AgentExit.checkFailed }
    }

    /// Fetches each credential from the agent and checks it.
    private func agentReports() async throws -> [ProbeReport] {
        let client = try socket.client
        let credentials: [(name: String, kind: String, provider: String?)]
        do {
            if let name {
                credentials = [(name, "-", nil)]
            } else {
                credentials = try await client.list().map { ($0.name, $0.kind, $0.provider) }
            }
        } catch {
            throw AgentExit.report(error)
        }
        let caFile = self.caFile, viaProxy = self.viaProxy
        let trustedProxy = TrustedServerUIDs(serverUID: try socket.agentUID)
        return try await Self.concurrently(credentials) { entry in
            let answer: [UInt8]
            do {
                answer = try await client.credentialJSON(name: entry.name)
            } catch let error as AgentClientError where !error.unreachable && error.code != "invalid_name" {
                return ProbeReport(name: entry.name, kind: entry.kind, provider: entry.provider, endpoint: "-",
                                   failure: ProbeFailure(.credentialUnavailable, error.message))
            } catch {
                throw AgentExit.report(error)
            }
            return await ConnectivityCheck.run(answer: answer, name: entry.name, caFile: caFile, viaProxy: viaProxy,
                                               trustedProxy: trustedProxy)
        }
    }

    /// Obtains each configured credential directly from its cloud and checks it.
    private func directReports(_ path: String) async throws -> [ProbeReport] {
        let agentConfig: AgentConfig
        do {
            agentConfig = try AgentConfig.load(path: path)
        } catch {
            throw OneShot.usageError("\(error)")
        }
        var selected = agentConfig.credentials
        if let name {
            selected = selected.filter { $0.name.rawValue == name }
            guard !selected.isEmpty else {
                let names = agentConfig.credentials.map(\.name.rawValue).joined(separator: ", ")
                throw OneShot.usageError("\(path) has no credential named '\(name)' (it has: \(names.isEmpty ? "none" : names))")
            }
        }
        let http = CurlHTTPClient()
        let environment = ProcessInfo.processInfo.environment
        let factory = CredentialSourceFactory(
            providers: CloudProviders(config: agentConfig, http: http, environment: environment), http: http)
        let caFile = self.caFile
        if viaProxy {
            // The proxy authenticates: no secret is obtained, only the config's user and address.
            let trustedProxy = TrustedServerUIDs(serverUID: try socket.agentUID)
            return try await Self.concurrently(selected) { credential in
                let check = ConnectivityCheck(name: credential.name.rawValue, provider: credential.provider,
                                              username: credential.target.user, secret: Secret(""),
                                              connection: credential.connection, proxy: credential.proxy?.listen,
                                              trustedProxy: trustedProxy)
                return check.proxy == nil ? check.noProxy() : await check.run()
            }
        }
        return try await Self.concurrently(selected) { credential in
            let issued: IssuedCredential
            let source: any CredentialSource
            do {
                source = try factory.make(credential)
                issued = try await source.fetch(now: Date())
            } catch {
                return ProbeReport(name: credential.name.rawValue, kind: credential.kind.rawValue,
                                   provider: credential.provider.rawValue, endpoint: "-",
                                   failure: ProbeFailure(.credentialUnavailable, "obtaining the credential failed: \(error)"))
            }
            var connection = credential.connection
            connection.caFile = connection.caFile ?? caFile
            let report = await ConnectivityCheck(
                name: credential.name.rawValue, provider: credential.provider,
                username: issued.username ?? credential.target.user, secret: issued.secret, connection: connection
            ).run()
            await source.shutdown()
            return report
        }
    }

    /// Runs `check` for every item at once and returns the reports in the items' order.
    private static func concurrently<Item: Sendable>(
        _ items: [Item], _ check: @escaping @Sendable (Item) async throws -> ProbeReport
    ) async throws -> [ProbeReport] {
        try await withThrowingTaskGroup(of: (Int, ProbeReport).self) { group in
            for (index, item) in items.enumerated() {
                group.addTask { (index, try await check(item)) }
            }
            var reports = [ProbeReport?](repeating: nil, count: items.count)
            for try await (index, report) in group { reports[index] = report }
            return reports.compactMap { $0 }
        }
    }
}
