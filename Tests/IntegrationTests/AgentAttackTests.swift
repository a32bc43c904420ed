import CloudAuth
import CloudEmulator
import CredentialAgent
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// An agent whose socket `nobody` can reach (mode 0666 in a 0755 directory), with `limits`
/// (more lines of the `socket:` section) and `allow` (the `socket.allow` section, if any).
private func foreignReachableAgent(_ label: String, emulator: CloudEmulator, limits: [String] = [],
                                   allow: String? = nil) async throws -> AgentProcess {
    let directory = try Peers.scratchDirectory(label + "-dir")
    chmod(directory, 0o755)
    chmod((directory as NSString).deletingLastPathComponent, 0o755)
    let agent = try await AgentProcess(label: label, config: config(limits: limits, allow: allow),
                                       environment: cloudEnvironment(emulator), socketDirectory: directory)
    try await waitUntil("ready", timeout: 30) { try await agent.request("GET", "/v1/ready").status == 200 }
    return agent
}

/// The emulator's Azure and GCP credentials on a socket that other uids may connect to.
private func config(limits: [String], allow: String?) -> String {
    emulatorAgentConfig(socket: [#"mode: "0666""#] + limits + (allow.map { ["allow: \($0)"] } ?? []))
}

/// Runs a Python script as `nobody` (a uid the agent does not allow to read secrets).
private func asNobody(_ script: String, _ arguments: [String]) async throws -> ProcessResult {
    try await ChildProcess.run("/usr/bin/setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                                    "/usr/bin/python3", "-c", script] + arguments, environment: [:])
}

/// Four connections that pipeline `GET /metrics` as fast as the agent takes them and never read
/// an answer, for `seconds`; prints how many bytes of requests the agent took.
private let pipelineWithoutReading = """
    import socket, sys, time
    path, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    request = b"GET /metrics HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n" * count
    conns = []
    for _ in range(4):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.setblocking(False)
        conns.append([s, 0])
    deadline = time.time() + seconds
    while time.time() < deadline:
        progressed = False
        for c in conns:
            if c[1] >= len(request):
                continue
            try:
                c[1] += c[0].send(request[c[1]:c[1] + 65536])
                progressed = True
            except BlockingIOError:
                pass
            except OSError:
                c[1] = len(request)
        if not progressed:
            time.sleep(0.05)
    print(sum(c[1] for c in conns))
    """

/// Keeps `count` connections open for `seconds`, reconnecting whenever the agent closes one and
/// sending a byte of a request head now and then (slowloris); prints how many reconnects it made.
private let holdConnections = """
    import socket, sys, time
    path, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.setblocking(False)
        return s
    conns = [connect() for _ in range(count)]
    reconnects = 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        for i, s in enumerate(conns):
            try:
                s.send(b"G")
                if s.recv(1) == b"":
                    raise OSError()
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                conns[i] = connect()
                reconnects += 1
        time.sleep(0.2)
    print(reconnects)
    """

/// Asks for a credential `count` times, a new connection each time, as fast as it can; prints
/// the status codes it got, counted.
private let deniedInALoop = """
    import collections, socket, sys
    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    statuses = collections.Counter()
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(("GET /v1/credentials/%s HTTP/1.1\\r\\nhost: x\\r\\nconnection: close\\r\\n\\r\\n" % name).encode())
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        s.close()
        statuses[answer[9:12].decode() or "none"] += 1
    print(dict(statuses))
    """

/// A long poll as `nobody`; prints the status and body of the answer.
private let longPoll = """
    import socket, sys
    path, name, version = sys.argv[1], sys.argv[2], sys.argv[3]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(path)
    s.sendall(("GET /v1/credentials/%s?wait=60&version=%s HTTP/1.1\\r\\nhost: x\\r\\nconnection: close\\r\\n\\r\\n" % (name, version)).encode())
    answer = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        answer += chunk
    print(answer.decode(errors="replace"))
    """

/// The attacks a hostile local user made against the socket, each against the real binary.
@Suite(.serialized, .enabled(if: getuid() == 0, "needs root to run a client as nobody"))
struct AgentAttackTests {
    /// Responses to a peer that does not read them no longer pile up in the agent: it stops
    /// reading that peer, then closes it after the idle timeout, while allowed clients are
    /// answered as usual.
    @Test func aPeerThatPipelinesAndNeverReadsCostsBoundedMemory() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await foreignReachableAgent("attack-pipeline", emulator: emulator, limits: ["idle_timeout: 3s"])
        let before = residentMB(agent.pid)
        async let attack = asNobody(pipelineWithoutReading, [agent.socketPath, "40000", "8"])
        var peak = before
        var waits: [Double] = []
        for _ in 0..<14 {
            try await Task.sleep(for: .milliseconds(500))
            let started = Date()
            let answer = try await agent.request("GET", "/v1/credentials/az-pg", timeout: 10 * Peers.timeScale)
            waits.append(Date().timeIntervalSince(started))
            #expect(answer.status == 200)
            peak = max(peak, residentMB(agent.pid))
        }
        let result = try await attack
        #expect(result.status == 0, "\(result.stderr)")
        // Without the bound, the agent takes every request and holds hundreds of MB of answers.
        #expect(peak < before + 100, "RSS went from \(before) MB to \(peak) MB; the attack sent \(result.stdout) bytes")
        // Allowed clients keep their latency: the typical answer stays quick, and no answer waits
        // for the attacker's queue. (The bound on the slowest leaves room for this machine's
        // other tests, which run beside this one.)
        let typical = waits.sorted()[waits.count / 2], slowest = waits.max() ?? 0
        #expect(typical < 0.5 * Peers.timeScale, "an allowed client's median wait was \(typical) s: \(waits)")
        #expect(slowest < 5 * Peers.timeScale, "an allowed client waited \(slowest) s: \(waits)")
        // The attacker's connections were closed for not reading (idle timeout), and what they
        // cost is given back.
        let metrics = try await agent.request("GET", "/metrics").bodyText
        #expect(metrics.contains("\ncredagent_connections 1.0\n"), "\(metrics)")
        #expect(residentMB(agent.pid) < before + 50)
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    /// A foreign uid that holds and reconnects as many connections as it can gets its share and
    /// no more: allowed clients still connect.
    @Test func foreignPeersCannotTakeEveryConnection() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await foreignReachableAgent("attack-slowloris", emulator: emulator,
                                                    limits: ["max_connections: 8", "max_foreign_connections: 3"])
        async let attack = asNobody(holdConnections, [agent.socketPath, "30", "6"])
        // Under way once the foreign uid holds its three places and was refused the other 27.
        try await waitUntil("the foreign uid was refused 27 connections", timeout: 20) {
            let metrics = try await agent.request("GET", "/metrics").bodyText
            let rejected = metrics.split(separator: "\n").first { $0.hasPrefix("credagent_connections_rejected_total ") }
            return (rejected?.split(separator: " ").last.flatMap { Int($0) } ?? 0) >= 27
        }
        // Five places of eight are left for allowed peers, whatever the foreign uid does.
        let allowed = try (0..<4).map { _ in try SocketConnection(agent.socketPath) }
        for connection in allowed { #expect(connection.get("/v1/health") == 200) }
        let result = try await attack
        #expect(result.status == 0, "\(result.stderr)")
        #expect((Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) >= 27, "reconnects: \(result.stdout)")
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    /// A long poll that began while its uid was allowed is answered 403 by the reload that
    /// removes the uid, instead of receiving the next secret.
    @Test func aReloadThatRevokesAUIDAnswersItsWaitingLongPolls() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await foreignReachableAgent("attack-revoke", emulator: emulator, allow: "{uids: [0, 65534]}")
        let version = try #require(try await agent.credential("az-pg")["version"] as? Int)
        let started = Date()
        async let poll = asNobody(longPoll, [agent.socketPath, "az-pg", String(version)])
        try await Task.sleep(for: .seconds(1))
        try config(limits: [], allow: "{uids: [0]}").replacingOccurrences(of: "SOCKET", with: agent.socketPath)
            .write(toFile: agent.configPath, atomically: true, encoding: .utf8)
        agent.signal(SIGHUP)
        let answer = try await poll
        #expect(answer.stdout.hasPrefix("HTTP/1.1 403 Forbidden"), "\(answer.stdout)\(answer.stderr)")
        #expect(!answer.stdout.contains("password"))
        #expect(Date().timeIntervalSince(started) < 30, "answered by the reload, not by the 60 s wait")
        #expect(await agent.stop() == 0)
        try await emulator.stop()
    }

    /// Thousands of refused connections a second make a line per second (with how many were not
    /// logged), and the operator's own lines are all there.
    @Test func refusedPeersCannotFloodTheLog() async throws {
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let agent = try await foreignReachableAgent("attack-log", emulator: emulator)
        let started = Date()
        async let flood = asNobody(deniedInALoop, [agent.socketPath, "az-pg", "3000"])
        try await Task.sleep(for: .milliseconds(300))
        agent.signal(SIGHUP)
        let result = try await flood
        let seconds = Date().timeIntervalSince(started)
        #expect(result.stdout.contains("'403': 3000"), "\(result.stdout)\(result.stderr)")
        try await waitUntil("the config is reloaded", timeout: 10) { agent.log.contains("config reloaded") }
        let metrics = try await agent.request("GET", "/metrics").bodyText
        #expect(metrics.contains("\ncredagent_denied_peers_total 3000\n"), "every refusal is counted")
        #expect(await agent.stop() == 0)
        let log = agent.log
        let denials = log.split(separator: "\n").filter { $0.contains("peer not allowed to read secrets") }
        #expect(denials.count >= 1 && Double(denials.count) <= seconds + 2, "\(denials.count) lines in \(seconds) s")
        let unlogged = denials.compactMap { $0.split(separator: " ").first { $0.hasPrefix("peer.denials_not_logged=") } }
            .compactMap { Int($0.split(separator: "=")[1]) }
        #expect(unlogged.count == denials.count)
        if denials.count > 1 { #expect(unlogged.dropFirst().allSatisfy { $0 > 0 }, "\(unlogged)") }
        for line in ["msg=listening", "msg=\"config reloaded\"", "msg=stopping", "msg=stopped"] {
            #expect(log.contains(line), "\(line) is missing")
        }
        try await emulator.stop()
    }
}
