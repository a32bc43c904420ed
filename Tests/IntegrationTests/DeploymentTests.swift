import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The deployment files under deploy/: the systemd unit and its notify protocol, and the
/// Kubernetes manifests, checked with the tools that read them.
@Suite(.serialized) struct DeploymentTests {
    static let deploy = ChildProcess.packageRoot + "/deploy"
    static let kustomizations = ["base", "overlays/eks", "overlays/aks", "overlays/gke", "overlays/kong-proxy"]
    /// The Kubernetes release the manifests are validated against (native sidecars are GA there).
    static let kubernetesVersion = "1.33.0"
    /// Whether kubectl and the schema validator are installed.
    static func toolsAvailable() async -> Bool {
        let kubectl = try? await ChildProcess.run("/usr/bin/env", ["kubectl", "version", "--client"])
        guard kubectl?.status == 0 else { return false }
        return await ChildProcess.pythonHas("kubernetes_validate", "yaml")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"), "needs systemd-analyze (scripts/bootstrap installs systemd)"))
    func theSystemdUnitVerifiesWithoutAWarning() async throws {
        // The unit as shipped, with ExecStart pointing at the binary under test (verify checks that it runs).
        let directory = try Peers.scratchDirectory("systemd-unit")
        let unit = try String(contentsOfFile: Self.deploy + "/systemd/credagent.service", encoding: .utf8)
        #expect(unit.contains("Type=notify"))
        try unit.replacingOccurrences(of: "/usr/local/bin/credagent", with: Peers.credagentBinary)
            .write(toFile: directory + "/credagent.service", atomically: true, encoding: .utf8)
        let verified = try await ChildProcess.run("/usr/bin/systemd-analyze", ["verify", directory + "/credagent.service"])
        #expect(verified.status == 0, "\(verified.stderr)")
        #expect(verified.stderr.isEmpty, "systemd-analyze warned: \(verified.stderr)")
    }

    @Test func theAgentNotifiesSystemdReadyOnlyOnceEveryCredentialIsServableAndFeedsTheWatchdog() async throws {
        let directory = try Peers.scratchDirectory("systemd-notify")
        let notifications = try DatagramReceiver(path: directory + "/notify.sock")
        let emulator = try await startEmulator(tokenLifetime: 3600)
        emulator.inject(.status(500, body: #"{"error":"internal"}"#), at: .azureIMDSToken)
        var environment = cloudEnvironment(emulator)
        environment["NOTIFY_SOCKET"] = notifications.path
        environment["WATCHDOG_USEC"] = "400000"
        let agent = try await AgentProcess(label: "notify-agent", config: emulatorAgentConfig(backoffMax: "500ms"), environment: environment)

        // While az-pg cannot be fetched: watchdog pings every 200 ms, no READY.
        var received: [String] = []
        try await waitUntil("three watchdog pings", timeout: 10) {
            received += notifications.drain()
            return received.filter { $0 == "WATCHDOG=1" }.count >= 3
        }
        #expect(try await agent.request("GET", "/v1/ready").status == 503)
        #expect(!received.contains { $0.hasPrefix("READY=1") })

        emulator.clearFailure(at: .azureIMDSToken)
        try await waitUntil("READY=1", timeout: 20) {
            received += notifications.drain()
            return received.contains { $0.hasPrefix("READY=1") }
        }
        #expect(try await agent.request("GET", "/v1/ready").status == 200)

        #expect(await agent.stop() == 0)
        received += notifications.drain()
        #expect(received.filter { $0.hasPrefix("READY=1") }.count == 1)
        // A watchdog ping may still cross it; systemd keeps the watchdog while a service stops.
        #expect(received.filter { $0 != "WATCHDOG=1" }.last == "STOPPING=1")
        try await emulator.stop()
    }

    @Test(.enabled("needs kubectl and kubernetes-validate (scripts/bootstrap installs them)") { await toolsAvailable() },
          arguments: kustomizations)
    func theKubernetesManifestsRenderAndValidate(_ kustomization: String) async throws {
        let rendered = try await ChildProcess.run("/usr/bin/env", ["kubectl", "kustomize", Self.deploy + "/kubernetes/" + kustomization])
        try #require(rendered.status == 0, "kubectl kustomize \(kustomization): \(rendered.stderr)")
        let directory = try Peers.scratchDirectory("kustomize-" + kustomization.replacingOccurrences(of: "/", with: "-"))
        let manifest = directory + "/rendered.yaml"
        try rendered.stdout.write(toFile: manifest, atomically: true, encoding: .utf8)

        let validated = try await ChildProcess.run("/usr/bin/env", ["kubernetes-validate", "--strict", "--quiet",
                                                                    "-k", Self.kubernetesVersion, manifest])
        #expect(validated.status == 0, "\(validated.stdout)\(validated.stderr)")

        // Each credagent config in a ConfigMap passes `credagent config check`.
        let extracted = try await ChildProcess.python(["-c", """
            import sys, yaml
            count = 0
            for document in yaml.safe_load_all(open(sys.argv[1])):
                if document and document.get("kind") == "ConfigMap" and "agent.yaml" in document.get("data", {}):
                    count += 1
                    open(f"{sys.argv[2]}/agent-{count}.yaml", "w").write(document["data"]["agent.yaml"])
            print(count)
            """, manifest, directory])
        try #require(extracted.status == 0, "\(extracted.stderr)")
        let configs = Int(extracted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(configs == (kustomization == "base" ? 0 : 1))
        for index in stride(from: 1, through: configs, by: 1) {
            let checked = try await runCredagent(["config", "check", "\(directory)/agent-\(index).yaml"])
            #expect(checked.status == 0, "\(kustomization): \(checked.stderr)")
        }

        // The sidecar's exec probes are commands of this binary: with no agent they report it
        // unreachable (3), not a usage error (2).
        let probes = try await ChildProcess.python(["-c", """
            import json, sys, yaml
            for document in yaml.safe_load_all(open(sys.argv[1])):
                if document and document.get("kind") == "Deployment":
                    for container in document["spec"]["template"]["spec"].get("initContainers", []):
                        if container["name"] == "credagent":
                            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                                print(json.dumps(container[probe]["exec"]["command"]))
            """, manifest])
        let commands = try probes.stdout.split(separator: "\n").map {
            try JSONDecoder().decode([String].self, from: Data($0.utf8))
        }
        #expect(commands.count == 3)
        for command in commands {
            #expect(command.first == "credagent")
            let probed = try await runCredagent(Array(command.dropFirst()) + ["--socket", directory + "/absent.sock"])
            #expect(probed.status == 3, "\(command): \(probed.stderr)")
        }
    }
}

extension DeploymentTests {
    @Test("kong-proxy: Kong's database is the Postgres proxy's loopback port, as the agent's user, with no password")
    func kongPointsAtTheLocalProxy() async throws {
        try #require(await Self.toolsAvailable(), "needs kubectl (scripts/bootstrap installs it)")
        let rendered = try await ChildProcess.run("/usr/bin/env", ["kubectl", "kustomize", Self.deploy + "/kubernetes/overlays/kong-proxy"])
        try #require(rendered.status == 0, "\(rendered.stderr)")
        let directory = try Peers.scratchDirectory("kustomize-kong-proxy-env")
        try rendered.stdout.write(toFile: directory + "/rendered.yaml", atomically: true, encoding: .utf8)
        let facts = try await ChildProcess.python(["-c", """
            import json, sys, yaml
            documents = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
            config = yaml.safe_load(next(d for d in documents if d["kind"] == "ConfigMap")["data"]["agent.yaml"])
            database = next(c for c in config["credentials"] if c["kind"] == "postgres")
            deployment = next(d for d in documents if d["kind"] == "Deployment")
            kong = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "kong")
            env = {e["name"]: e.get("value") for e in kong["env"]}
            print(json.dumps({"listen": database["proxy"]["listen"], "user": database["user"],
                              "host": env.get("KONG_PG_HOST"), "port": env.get("KONG_PG_PORT"),
                              "kong_user": env.get("KONG_PG_USER"), "ssl": env.get("KONG_PG_SSL"),
                              "password": "KONG_PG_PASSWORD" in env}))
            """, directory + "/rendered.yaml"])
        try #require(facts.status == 0, "\(facts.stderr)")
        let values = try #require(try JSONSerialization.jsonObject(with: Data(facts.stdout.utf8)) as? [String: Any])
        #expect(values["listen"] as? String == "\(values["host"] as? String ?? "?"):\(values["port"] as? String ?? "?")")
        #expect(values["kong_user"] as? String == values["user"] as? String)
        #expect(values["ssl"] as? String == "off")
        #expect(values["password"] as? Bool == false, "Kong holds no database password")
    }
}

/// A bound Unix datagram socket, standing in for systemd's notification socket.
final class DatagramReceiver {
    let path: String
    private let descriptor: Int32

    init(path: String) throws {
        self.path = path
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw TestFailure("socket() failed") }
        let bound = withUnixAddress(path) { bind(descriptor, $0, $1) }
        guard bound == 0 else {
            close(descriptor)
            throw TestFailure("bind(\(path)) failed: errno \(errno)")
        }
    }

    deinit { close(descriptor) }

    /// Every datagram waiting, without blocking.
    func drain() -> [String] {
        var messages: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard count > 0 else { return messages }
            messages.append(String(decoding: buffer[0..<count], as: UTF8.self))
        }
    }
}
