import CloudAuth
import CloudEmulator
import CredentialAgent
import CredentialModel
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// An agent config with one credential per entry of `credentials` (name, provider and extra
/// YAML lines, already indented for a credential's keys), on loopback without TLS, refreshing
/// without jitter so that short-lived tokens rotate on a schedule.
func sinkAgentConfig(_ credentials: [(name: String, provider: String, extra: String)]) -> String {
    let entries = credentials.map { credential in
        """
          - name: \(credential.name)
            kind: postgres
            provider: \(credential.provider)
            host: 127.0.0.1
            user: kong
            database: kong
            sslmode: disable
        \(credential.extra)
        """
    }
    return """
        socket:
          path: SOCKET
        refresh:
          jitter: 0
          backoff: {initial: 200ms, max: 1s}
        credentials:
        \(entries.joined(separator: "\n"))
        """
}

func fileText(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

/// The state letter and the parent of process `pid`, from /proc; nil once it has been reaped.
private func processStatus(_ pid: pid_t) -> (state: Character, parent: pid_t, command: String)? {
    guard let stat = fileText("/proc/\(pid)/stat"), let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 1, let state = fields[0].first, let parent = pid_t(fields[1]) else { return nil }
    return (state, parent, String(stat[stat.index(after: open)..<close]))
}

/// Whether process `pid` runs (exists and is not a zombie).
private func isRunning(_ pid: pid_t) -> Bool { processStatus(pid).map { $0.state != "Z" } ?? false }

/// The command name of process `pid`, zombie or not; nil once it has been reaped.
private func command(of pid: pid_t) -> String? { processStatus(pid)?.command }

/// The processes whose parent is `pid`.
private func children(of pid: pid_t) -> [pid_t] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { pid_t($0) }.filter { processStatus($0)?.parent == pid }
}

private func fileStatus(_ path: String) -> stat? {
    var status = stat()
    return stat(path, &status) == 0 ? status : nil
}

/// Forces a rotation of `name`: asks for a refresh until the version passes `version` (the agent
/// refuses client refreshes within 5 s of the last new secret). Returns the new credential.
func rotate(_ agent: AgentProcess, _ name: String, after version: Int) async throws -> [String: Any] {
    var body: [String: Any] = [:]
    try await waitUntil("\(name) rotates past version \(version)", timeout: 20) {
        body = try await agent.json("POST", "/v1/credentials/\(name)/refresh").body
        return (body["version"] as? Int ?? 0) > version
    }
    return body
}

/// A python3 reader that opens `path` in a tight loop until `stop` exists, checking that every
/// read is one whole version written as `V|payload|V` (the payload's length depends on V) and
/// printing a JSON summary. It creates `ready` once it runs.
private let tornReadChecker = """
    import json, os, sys
    path, stop, ready = sys.argv[1:4]
    open(ready, "w").close()
    reads = bad = missing = 0
    versions = set()
    examples = []
    while not os.path.exists(stop):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            missing += 1
            continue
        reads += 1
        parts = data.split(b"|")
        ok = len(parts) == 3 and parts[0] == parts[2] and parts[0].isdigit()
        if ok:
            v = int(parts[0])
            ok = len(parts[1]) == (v * 7919) % 50000 + 1 and len(set(parts[1])) == 1
        if ok:
            versions.add(v)
        else:
            bad += 1
            if len(examples) < 3:
                examples.append(repr(data[:60]) + " (%d bytes)" % len(data))
    print(json.dumps({"reads": reads, "bad": bad, "missing": missing, "versions": len(versions), "examples": examples}))
    """

/// What `tornReadChecker` expects version `version` to hold.
private func tornReadContent(_ version: Int) -> String {
    let letter = Array("abcdefghij")[version % 10]
    return "\(version)|\(String(repeating: letter, count: (version * 7919) % 50000 + 1))|\(version)"
}

/// An application for on_rotate tests (python3): writes its pid file, and on each SIGHUP notes
/// the text the sink holds. Arguments: pid file, sink, notes file, stop file.
private let hupCounter = """
    import os, signal, sys, time
    pid_file, sink, received, stop = sys.argv[1:5]
    def hup(*_):
        try:
            text = open(sink).read()
        except FileNotFoundError:
            text = "missing"
        with open(received, "a") as f:
            f.write(text + "\\n")
    signal.signal(signal.SIGHUP, hup)
    # The test process starts children with its blocked signals still blocked.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGHUP])
    with open(pid_file + ".tmp", "w") as f:
        f.write("%d\\n" % os.getpid())
    os.rename(pid_file + ".tmp", pid_file)
    while not os.path.exists(stop):
        time.sleep(0.05)
    """

@Suite(.serialized) struct SinkTests {
    @Test func aReaderInALoopNeverSeesAPartialOrMixedFile() async throws {
        let directory = try Peers.scratchDirectory("sink-torn")
        let file = SinkFile(path: directory + "/secret", format: .password)
        try SinkFileSystem.write(Secret(tornReadContent(0)), to: file)
        let stop = directory + "/stop", ready = directory + "/ready"
        async let reader = ChildProcess.python(["-c", tornReadChecker, file.path, stop, ready])
        // Declared after the reader: runs first when the test fails, so that the reader ends.
        defer { _ = FileManager.default.createFile(atPath: stop, contents: nil) }
        try await waitUntil("the reader runs", timeout: 60 * Peers.timeScale) { FileManager.default.fileExists(atPath: ready) }
        try await BlockingExecutor.shared.run {
            for version in 1...1000 { try SinkFileSystem.write(Secret(tornReadContent(version)), to: file) }
        }
        _ = FileManager.default.createFile(atPath: stop, contents: nil)
        let result = try await reader
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
                                   "\(result.stdout)\(result.stderr)")
        #expect(summary["bad"] as? Int == 0, "\(summary)")
        #expect(summary["missing"] as? Int == 0, "the path always names a whole file: \(summary)")
        #expect((summary["versions"] as? Int ?? 0) > 10, "the reader raced many writes: \(summary)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.contains("credagent-") }
        #expect(leftovers.isEmpty, "no temporary file is left: \(leftovers)")
    }

    @Test(.enabled(if: PostgresPeer.available, "needs the postgres peer (run scripts/test)"))
    func psqlLogsInWithThePgpassSinkThroughARotation() async throws {
        let user = uniqueUser("sinks")
        let directory = try Peers.scratchDirectory("sink-pgpass")
        let pgpass = directory + "/orders-db.pgpass"
        let fixture = try await EmulatedAgent(label: "sink-pgpass", config: agentConfig(credentials: PostgresPeer.gcpCredential(
            "orders-db", user: user, more: ["sinks:", "  - {path: \(pgpass), format: pgpass}"])))
        let agent = fixture.agent
        try await withCleanup {
            let first = try await agent.credential("orders-db")
            let firstToken = Secret(first["password"] as? String ?? "")
            try await PostgresPeer.createRole(user, password: firstToken)

            func psql() async throws -> ProcessResult {
                try await ChildProcess.run(
                    (Peers.env("CREDAGENT_TEST_PG_BIN") ?? "/usr/bin") + "/psql",
                    ["-X", "-At", "-h", PostgresPeer.host, "-p", String(PostgresPeer.port), "-U", user, "-d", PostgresPeer.database,
                     "-c", "select current_user"],
                    environment: ["PGPASSFILE": pgpass, "PGSSLMODE": "require", "PGCONNECT_TIMEOUT": "10"])
            }
            try await waitUntil("the sink holds version 1", timeout: 10) { fileText(pgpass)?.contains(firstToken.reveal().replacingOccurrences(of: ":", with: "\\:")) == true }
            #expect(fileStatus(pgpass).map { $0.st_mode & 0o777 } == 0o600, "libpq ignores a .pgpass readable by others")
            let before = try await psql()
            #expect(before.status == 0 && before.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == user, "\(before.stderr)")

            let second = try await rotate(agent, "orders-db", after: 1)
            let secondToken = Secret(second["password"] as? String ?? "")
            try await PostgresPeer.setPassword(user, password: secondToken)
            try await waitUntil("the sink holds version 2", timeout: 10) {
                fileText(pgpass) == "\(PostgresPeer.host):\(PostgresPeer.port):\(PostgresPeer.database):\(user):\(secondToken.reveal())\n"
            }
            let after = try await psql()
            #expect(after.status == 0 && after.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == user,
                    "psql logs in with the rotated token the sink holds: \(after.stderr)")
            #expect(!agent.log.contains(secondToken.reveal()))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test func modeAndOwnerAreAppliedOnEveryWrite() async throws {
        let directory = try Peers.scratchDirectory("sink-owner")
        let path = directory + "/token"
        // Only root may give a file away; as another user the agent's own ids are named.
        let root = geteuid() == 0
        let owner = root ? UInt32(4321) : geteuid(), group = root ? UInt32(4322) : getegid()
        let config = sinkAgentConfig([("db", "gcp", "    sinks: [{path: \(path), format: password, mode: \"0640\", owner: \(owner), group: \(group)}]")])
        let fixture = try await EmulatedAgent(label: "sink-owner", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            let first = try await agent.credential("db")
            try await waitUntil("the sink is written", timeout: 10) { fileText(path) == first["password"] as? String }
            let written = try #require(fileStatus(path))
            #expect(written.st_mode & 0o7777 == 0o640)
            #expect(written.st_uid == owner && written.st_gid == group)

            // Someone changes the file; the next version puts mode and owner back.
            chmod(path, 0o666)
            if root { chown(path, 0, 0) }
            let second = try await rotate(agent, "db", after: 1)
            try await waitUntil("the sink holds version 2", timeout: 10) { fileText(path) == second["password"] as? String }
            let rewritten = try #require(fileStatus(path))
            #expect(rewritten.st_mode & 0o7777 == 0o640)
            #expect(rewritten.st_uid == owner && rewritten.st_gid == group)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test func theSignalArrivesOncePerRotation() async throws {
        let directory = try Peers.scratchDirectory("sink-signal")
        let sink = directory + "/version", pidFile = directory + "/app.pid", received = directory + "/received"
        let stop = directory + "/stop"
        // A 3 s token is replaced every 1.5 s.
        let emulator = try await startEmulator(tokenLifetime: 3)
        try await withCleanup {
            async let app = ChildProcess.python(["-c", hupCounter, pidFile, sink, received, stop])
            defer { _ = FileManager.default.createFile(atPath: stop, contents: nil) }
            try await waitUntil("the application wrote its pid file", timeout: 60) { FileManager.default.fileExists(atPath: pidFile) }
            let config = sinkAgentConfig([("db", "gcp", """
                    sinks: [{path: \(sink), format: template, template: "{{version}}"}]
                    on_rotate: {signal: HUP, pid_file: \(pidFile)}
                """)])
            let agent = try await AgentProcess(label: "sink-signal", config: config, environment: cloudEnvironment(emulator))
            try await waitUntil("four rotations were signalled", timeout: 30) {
                (fileText(received) ?? "").split(separator: "\n").count >= 4
            }
            #expect(await agent.stop() == 0)
            _ = FileManager.default.createFile(atPath: stop, contents: nil)
            _ = try await app
            let versions = (fileText(received) ?? "").split(separator: "\n").map(String.init)
            let sent = agent.log.components(separatedBy: "on_rotate: sent SIGHUP").count - 1
            #expect(versions.count == sent, "one signal per write: \(versions), \(sent) sent")
            #expect(versions == (1...versions.count).map(String.init),
                    "each version once, in order, already in the sink when the signal arrives: \(versions)")
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func aPidFileMissingThenNamingNoProcessThenWithGarbageIsRetriedUntilItNamesTheProcess() async throws {
        let directory = try Peers.scratchDirectory("sink-pidfile")
        let sink = directory + "/version", pidFile = directory + "/app.pid", received = directory + "/received"
        let stop = directory + "/stop", appPidFile = directory + "/app-own.pid"
        let emulator = try await startEmulator(tokenLifetime: 3600)
        try await withCleanup {
            let config = sinkAgentConfig([("db", "gcp", """
                    sinks: [{path: \(sink), format: template, template: "{{version}}"}]
                    on_rotate: {signal: HUP, pid_file: \(pidFile)}
                """)])
            let agent = try await AgentProcess(label: "sink-pidfile", config: config, environment: cloudEnvironment(emulator))
            try await withCleanup {
                try await waitUntil("the missing file is reported", timeout: 10) {
                    agent.log.contains("on_rotate: pid file \(pidFile) does not exist yet; retrying")
                }
                // A process that has ended: its id names no one.
                let ended = try await ChildProcess.run("/bin/sh", ["-c", "echo $$"])
                let endedPID = ended.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                try (endedPID + "\n").write(toFile: pidFile, atomically: true, encoding: .utf8)
                try await waitUntil("the process that is not there is reported", timeout: 15) {
                    agent.log.contains("on_rotate: process \(endedPID) named by \(pidFile) is not running; retrying")
                }
                try "starting...\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
                try await waitUntil("the garbage is reported", timeout: 15) {
                    agent.log.contains("on_rotate: pid file \(pidFile) does not hold a decimal process id (12 bytes, not shown); the application should write its pid alone; retrying")
                }
                #expect(!agent.log.contains("starting..."), "what the file holds is never logged")
                #expect(try await agent.request("GET", "/v1/credentials/db").status == 200, "the agent keeps serving")
                // The application comes up and writes its pid: the retried signal reaches it.
                async let app = ChildProcess.python(["-c", hupCounter, appPidFile, sink, received, stop])
                defer { _ = FileManager.default.createFile(atPath: stop, contents: nil) }
                try await waitUntil("the application runs", timeout: 60) { FileManager.default.fileExists(atPath: appPidFile) }
                #expect(rename(appPidFile, pidFile) == 0)
                try await waitUntil("the signal arrives", timeout: 15) { fileText(received) == "1\n" }
                _ = FileManager.default.createFile(atPath: stop, contents: nil)
                _ = try await app
            } cleanup: {
                _ = await agent.stop()
            }
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func aPidFileSwappedForALinkToASinkIsRefusedAndTheSecretNeverLogged() async throws {
        let directory = try Peers.scratchDirectory("sink-pidlink")
        let sink = directory + "/db.pw", pidFile = directory + "/app.pid"
        // The application's uid replaced its pid file with a link to the agent's root-only sink.
        #expect(symlink(sink, pidFile) == 0)
        let config = sinkAgentConfig([("db", "gcp", """
                sinks: [{path: \(sink), format: password}]
                on_rotate: {signal: HUP, pid_file: \(pidFile)}
            """)])
        let fixture = try await EmulatedAgent(label: "sink-pidlink", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            let password = try #require(try await agent.credential("db")["password"] as? String)
            try await waitUntil("the link is refused", timeout: 15) {
                agent.log.contains("on_rotate: pid file \(pidFile) is a symbolic link, which the agent does not follow")
            }
            #expect(fileText(sink) == password)
            #expect(!agent.log.contains(String(password.prefix(12))), "no part of the file the link names is logged")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test func aFIFOPidFileIsRefusedAtOnceAndTheAgentStillStopsAndRemovesItsSinks() async throws {
        let directory = try Peers.scratchDirectory("sink-pidfifo")
        let sink = directory + "/db.pw", pidFile = directory + "/app.pid"
        #expect(mkfifo(pidFile, 0o644) == 0)
        defer {
            // Lets go of a reader blocked in open(2), should there be one.
            let writer = open(pidFile, O_WRONLY | O_NONBLOCK)
            if writer >= 0 { close(writer) }
        }
        let config = sinkAgentConfig([("db", "gcp", """
                sinks: [{path: \(sink), format: password}]
                on_rotate: {signal: TERM, pid_file: \(pidFile)}
            """)])
        let fixture = try await EmulatedAgent(label: "sink-pidfifo", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            try await waitUntil("the FIFO is refused", timeout: 15) {
                agent.log.contains("on_rotate: pid file \(pidFile) is a FIFO, not a regular file; have the application write its pid to a plain file; retrying")
            }
            #expect(FileManager.default.fileExists(atPath: sink))
            #expect(await agent.stop() == 0, "the agent stops within its grace: no hook holds it")
            #expect(!FileManager.default.fileExists(atPath: sink), "and removes its sink")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give the pid file to another uid"))
    func aPidFileOfAnotherUIDNamingARootProcessSendsItNothing() async throws {
        let directory = try Peers.scratchDirectory("sink-pidowner")
        let sink = directory + "/version", pidFile = directory + "/app.pid", received = directory + "/received"
        let stop = directory + "/stop", appPidFile = directory + "/app-own.pid"
        let emulator = try await startEmulator(tokenLifetime: 3600)
        try await withCleanup {
            // A process of root, which notes every SIGHUP.
            async let app = ChildProcess.python(["-c", hupCounter, appPidFile, sink, received, stop])
            defer { _ = FileManager.default.createFile(atPath: stop, contents: nil) }
            try await waitUntil("the application runs", timeout: 60) { FileManager.default.fileExists(atPath: appPidFile) }
            // uid 65534 writes a pid file naming it.
            let pid = try #require(fileText(appPidFile)).trimmingCharacters(in: .whitespacesAndNewlines)
            try "\(pid)\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
            #expect(chown(pidFile, 65534, 65534) == 0)
            let config = sinkAgentConfig([("db", "gcp", """
                    sinks: [{path: \(sink), format: template, template: "{{version}}"}]
                    on_rotate: {signal: HUP, pid_file: \(pidFile)}
                """)])
            let agent = try await AgentProcess(label: "sink-pidowner", config: config, environment: cloudEnvironment(emulator))
            try await withCleanup {
                try await waitUntil("the process is refused", timeout: 15) {
                    agent.log.contains("on_rotate: process \(pid) named by \(pidFile) runs as uid 0 but the pid file belongs to uid 65534, so it is not signalled")
                }
                let line = agent.log.split(separator: "\n").first { $0.contains("but the pid file belongs to uid 65534") }
                #expect(line?.contains("level=error") == true, "logged as an error: \(line ?? "")")
                #expect(fileText(received) == nil, "no signal reached the process")
                #expect(!agent.log.contains("on_rotate: sent SIGHUP"))
            } cleanup: {
                _ = await agent.stop()
            }
            _ = FileManager.default.createFile(atPath: stop, contents: nil)
            _ = try await app
        } cleanup: {
            try? await emulator.stop()
        }
    }

    @Test func aHookCommandGetsNoSecretAndIsKilledAtItsTimeout() async throws {
        let directory = try Peers.scratchDirectory("sink-command")
        let environmentDump = directory + "/env"
        let config = sinkAgentConfig([
            ("dumps", "gcp", "    on_rotate: {command: [/bin/sh, -c, 'env > \(environmentDump)']}"),
            ("hangs", "azure", "    on_rotate: {command: [/bin/sleep, '30'], timeout: 1s}"),
        ])
        let fixture = try await EmulatedAgent(label: "sink-command", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            let credential = try await agent.credential("dumps")
            try await waitUntil("the command ran", timeout: 10) { fileText(environmentDump)?.contains("CREDAGENT_VERSION=1") == true }
            let environment = fileText(environmentDump) ?? ""
            #expect(environment.contains("CREDAGENT_CREDENTIAL=dumps"))
            #expect(!environment.contains(credential["password"] as? String ?? "-"), "the secret is not in the hook's environment")
            #expect(!environment.contains("GCE_METADATA_HOST"), "nor the agent's own environment")
            try await waitUntil("the hanging command is killed", timeout: 10) {
                agent.log.contains("on_rotate: /bin/sleep was killed after its timeout of 1s")
            }
            #expect(try await agent.request("GET", "/v1/credentials/hangs").status == 200)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test func aHookHasNoDescriptorButItsStandardOnesAndItsWholeGroupIsKilledAtItsTimeout() async throws {
        let directory = try Peers.scratchDirectory("sink-hookgroup")
        let background = directory + "/background"
        // `$$` is a literal `$` in the config.
        let config = sinkAgentConfig([
            ("waits", "gcp", "    on_rotate: {command: [/bin/sleep, '30']}"),
            ("hangs", "azure", "    on_rotate: {command: [/bin/sh, -c, 'sleep 30 & echo $$! > \(background); sleep 30 & echo $$! >> \(background); wait'], timeout: 1s}"),
        ])
        let fixture = try await EmulatedAgent(label: "sink-hookgroup", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            // The hook's descriptors, looked at from outside (a process listing its own sees the listing's).
            var hook: pid_t?
            try await waitUntil("the waiting hook runs", timeout: 15) {
                hook = children(of: agent.pid).first { command(of: $0) == "sleep" }
                return hook != nil
            }
            let pid = try #require(hook)
            let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").sorted()
            #expect(descriptors == ["0", "1", "2"], "not the agent's socket or any other descriptor")
            kill(pid, SIGKILL)

            try await waitUntil("the hanging hook is killed", timeout: 15) {
                agent.log.contains("on_rotate: /bin/sh was killed after its timeout of 1s")
            }
            let sleepers = (fileText(background) ?? "").split(separator: "\n").compactMap { pid_t($0) }
            #expect(sleepers.count == 2)
            try await waitUntil("no sleep it started is left", timeout: 10) { sleepers.allSatisfy { !isRunning($0) } }
        } cleanup: {
            await fixture.stop()
        }
    }

    /// Whether this process may start one in a new PID namespace (root, where the kernel lets it).
    static let canUnsharePID: Bool = {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        probe.arguments = ["--pid", "--fork", "--mount-proc", "/bin/true"]
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { return false }
        probe.waitUntilExit()
        return probe.terminationStatus == 0
    }()

    @Test(.enabled(if: canUnsharePID, "needs unshare --pid: run as root where namespaces are allowed"))
    func asPID1TheAgentReapsTheOrphansAHookLeaves() async throws {
        let directory = try Peers.scratchDirectory("sink-pid1")
        let configPath = directory + "/agent.yaml", logPath = directory + "/agent.log"
        // The shell exits at once; its sleep becomes the child of PID 1, the agent.
        try sinkAgentConfig([("db", "gcp", "    on_rotate: {command: [/bin/sh, -c, 'sleep 5 &']}")])
            .replacingOccurrences(of: "SOCKET", with: directory + "/agent.sock")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let emulator = try await startEmulator(tokenLifetime: 3600)
        let namespace = Process()
        namespace.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        namespace.arguments = ["--pid", "--fork", "--mount-proc", "--kill-child", Peers.credagentBinary, "run", "--config", configPath]
        namespace.environment = cloudEnvironment(emulator).merging(["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]) { $1 }
        namespace.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try namespace.run()
        try await withCleanup {
            let log = { fileText(logPath) ?? "" }
            try await waitUntil("the hook ran", timeout: 60) { log().contains("on_rotate: /bin/sh succeeded") }
            let agent = try #require(children(of: namespace.processIdentifier).first, "the agent runs under unshare")
            var orphan: pid_t?
            try await waitUntil("the hook's sleep is the agent's child", timeout: 10) {
                orphan = children(of: agent).first { command(of: $0) == "sleep" }
                return orphan != nil
            }
            let pid = try #require(orphan)
            // It exits after 5 s; reaped, it leaves no zombie behind.
            try await waitUntil("the orphan is reaped", timeout: 30) { command(of: pid) == nil }
        } cleanup: {
            // SIGKILL to unshare kills the namespace's init, and with it the namespace.
            if namespace.isRunning { kill(namespace.processIdentifier, SIGKILL) }
            namespace.waitUntilExit()
            try? await emulator.stop()
        }
    }

    @Test func sinksAreRemovedWhenTheCredentialStopsBeingServable() async throws {
        let directory = try Peers.scratchDirectory("sink-remove")
        let gcpSink = directory + "/gcp.json", azureSink = directory + "/azure.json"
        let both = sinkAgentConfig([
            ("gcp-db", "gcp", "    sinks: [{path: \(gcpSink), format: json}]"),
            ("az-db", "azure", "    sinks: [{path: \(azureSink), format: json}]"),
        ])
        let fixture = try await EmulatedAgent(label: "sink-remove", config: both, tokenLifetime: 4)
        let agent = fixture.agent
        let emulator = fixture.emulator
        try await withCleanup {
            try await waitUntil("both sinks are written", timeout: 20) {
                FileManager.default.fileExists(atPath: gcpSink) && FileManager.default.fileExists(atPath: azureSink)
            }

            // GCP's identity fails: its token's serving window (3 s of 4) ends and its file goes.
            emulator.inject(.status(500, body: #"{"error":"internal"}"#), at: .gcpMetadataToken)
            try await waitUntil("gcp-db is expired", timeout: 20) { try await agent.state("gcp-db") == "expired" }
            // The keeper wakes at the end of the serving window, which ends before the token does.
            try await waitUntil("gcp-db's sink is removed", timeout: 2) { !FileManager.default.fileExists(atPath: gcpSink) }
            #expect(FileManager.default.fileExists(atPath: azureSink))
            emulator.clearFailure(at: .gcpMetadataToken)
            try await waitUntil("gcp-db's sink is back", timeout: 20) { FileManager.default.fileExists(atPath: gcpSink) }

            // A reload without az-db removes its file.
            try sinkAgentConfig([("gcp-db", "gcp", "    sinks: [{path: \(gcpSink), format: json}]")])
                .replacingOccurrences(of: "SOCKET", with: agent.socketPath)
                .write(toFile: agent.configPath, atomically: true, encoding: .utf8)
            agent.signal(SIGHUP)
            try await waitUntil("az-db's sink is removed", timeout: 10) { !FileManager.default.fileExists(atPath: azureSink) }
            #expect(FileManager.default.fileExists(atPath: gcpSink))

            // The agent stops: nobody would remove the file at expiry, so it goes now.
            #expect(await agent.stop() == 0)
            #expect(!FileManager.default.fileExists(atPath: gcpSink))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test func aReloadThatChangesOnlySinksKeepsTheSecretAndMovesTheFiles() async throws {
        let directory = try Peers.scratchDirectory("sink-reload")
        let before = directory + "/before.pw", after = directory + "/after.json"
        let fixture = try await EmulatedAgent(label: "sink-reload", config: sinkAgentConfig([("db", "gcp", "    sinks: [{path: \(before), format: password}]")]), tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            let credential = try await agent.credential("db")
            try await waitUntil("the first sink is written", timeout: 10) { fileText(before) == credential["password"] as? String }

            try sinkAgentConfig([("db", "gcp", "    sinks: [{path: \(after), format: json}]")])
                .replacingOccurrences(of: "SOCKET", with: agent.socketPath)
                .write(toFile: agent.configPath, atomically: true, encoding: .utf8)
            agent.signal(SIGHUP)
            try await waitUntil("the new sink is written and the old one removed", timeout: 10) {
                FileManager.default.fileExists(atPath: after) && !FileManager.default.fileExists(atPath: before)
            }
            let written = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: after))) as? [String: Any]
            #expect(written?["version"] as? Int == 1, "the same secret: changing sinks does not refetch")
            #expect(written?["password"] as? String == credential["password"] as? String)
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test func aSinkThatCannotBeWrittenIsReportedAndTheAgentKeepsServing() async throws {
        let directory = try Peers.scratchDirectory("sink-bad")
        let missing = directory + "/not-yet"
        let config = sinkAgentConfig([("db", "gcp", """
                sinks:
                  - {path: \(missing)/db.pw, format: password}
                  - {path: \(directory)/db.env, format: env, owner: no-such-user-here}
            """)])
        let configPath = directory + "/agent.yaml"
        try config.replacingOccurrences(of: "SOCKET", with: directory + "/agent.sock").write(toFile: configPath, atomically: true, encoding: .utf8)
        let check = try await runCredagent(["config", "check", configPath])
        #expect(check.status == 2)
        #expect(check.stderr.contains("credentials[0].sinks[0]: directory \(missing) cannot be used: No such file or directory; create the directory (or mount the volume) or change the sink's path"), "\(check.stderr)")
        #expect(check.stderr.contains("credentials[0].sinks[1]: owner 'no-such-user-here' is not a known user on this system; use a numeric id or create it"), "\(check.stderr)")

        let fixture = try await EmulatedAgent(label: "sink-bad", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            let credential = try await agent.credential("db")
            try await waitUntil("the failed write is logged", timeout: 10) {
                agent.log.contains("sink \(missing)/db.pw: cannot create a file in \(missing): No such file or directory; create the directory")
            }
            #expect(agent.log.contains("sink \(directory)/db.env: owner 'no-such-user-here' is not a known user"))
            // Once the directory exists, the next attempt writes the file.
            try FileManager.default.createDirectory(atPath: missing, withIntermediateDirectories: false)
            try await waitUntil("the sink is written after all", timeout: 15) { fileText(missing + "/db.pw") == credential["password"] as? String }
            #expect(!agent.log.contains(credential["password"] as? String ?? "-"))
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give a directory to another uid"))
    func aSinkInADirectoryAnotherUIDCouldChangeIsRefusedAndNeverWrittenOrRemoved() async throws {
        let directory = try Peers.scratchDirectory("sink-unsafe")
        // foreign/sub: another uid could rename sub and put a link in its place.
        let foreign = directory + "/foreign", sub = foreign + "/sub", real = directory + "/real", link = directory + "/link"
        let open = directory + "/open"
        for path in [foreign, sub, real, open] { #expect(mkdir(path, 0o755) == 0) }
        #expect(chown(foreign, 65534, 65534) == 0)
        #expect(chmod(open, 0o1777) == 0, "sticky and writable by all: another uid could plant the sink")
        #expect(symlink(real, link) == 0)
        let planted = [sub + "/db.pw", real + "/db.pw", open + "/db.pw"]
        for path in planted { try "planted".write(toFile: path, atomically: false, encoding: .utf8) }
        let sinks = [sub + "/db.pw", link + "/db.pw", open + "/db.pw"]
        let config = sinkAgentConfig([("db", "gcp", "    sinks:\n" + sinks.map { "      - {path: \($0), format: password}" }.joined(separator: "\n"))])
        let configPath = directory + "/agent.yaml"
        try config.replacingOccurrences(of: "SOCKET", with: directory + "/agent.sock").write(toFile: configPath, atomically: true, encoding: .utf8)
        let refusals = [
            "directory \(foreign) is owned by uid 65534, which could change it, so another user could replace the sink or redirect the agent's writes; make it owned by root (chown 0 \(foreign))",
            "\(link) is a symbolic link, which the agent does not follow in a sink's path (whoever can change the link could send the file anywhere); name the sink by the path it resolves to, \(real)/db.pw",
            "directory \(open) is writable by every user (mode 1777), so another user could replace the sink or redirect the agent's writes; chmod o-w \(open) (or, when other users write it on purpose, set shared_directory: true on the sink)",
        ]
        let check = try await runCredagent(["config", "check", configPath])
        #expect(check.status == 2)
        for (index, refusal) in refusals.enumerated() {
            #expect(check.stderr.contains("credentials[0].sinks[\(index)]: \(refusal)\n"), "\(check.stderr)")
        }

        let fixture = try await EmulatedAgent(label: "sink-unsafe", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            _ = try await agent.credential("db")
            try await waitUntil("each refusal is logged", timeout: 15) {
                let log = agent.log
                return refusals.enumerated().allSatisfy { index, refusal in log.contains("sink \(sinks[index]): \(refusal)") }
            }
            #expect(await agent.stop() == 0)
            for path in planted { #expect(fileText(path) == "planted", "\(path) is never written or removed") }
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test func aSinkMayBeInADirectoryOthersWriteOnPurposeWhenItSaysSo() async throws {
        let directory = try Peers.scratchDirectory("sink-shared")
        // A Kubernetes emptyDir is mode 0777.
        let shared = directory + "/shared"
        #expect(mkdir(shared, 0o777) == 0 && chmod(shared, 0o777) == 0)
        let refused = sinkAgentConfig([("db", "gcp", "    sinks: [{path: \(shared)/db.pw, format: password}]")])
        let config = sinkAgentConfig([("db", "gcp", "    sinks: [{path: \(shared)/db.pw, format: password, shared_directory: true}]")])
        let configPath = directory + "/agent.yaml"
        for (text, status) in [(refused, Int32(2)), (config, 0)] {
            try text.replacingOccurrences(of: "SOCKET", with: directory + "/agent.sock").write(toFile: configPath, atomically: true, encoding: .utf8)
            let check = try await runCredagent(["config", "check", configPath])
            #expect(check.status == status, "\(check.stderr)")
        }
        let fixture = try await EmulatedAgent(label: "sink-shared", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            let password = try #require(try await agent.credential("db")["password"] as? String)
            try await waitUntil("the sink is written", timeout: 15) { fileText(shared + "/db.pw") == password }
            #expect(agent.log.contains("sink \(shared)/db.pw: its directory may be written by other uids (shared_directory)"))
            #expect(await agent.stop() == 0)
            #expect(!FileManager.default.fileExists(atPath: shared + "/db.pw"), "and removed when the agent stops")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test func aValueWithALineBreakIsNotWrittenToALineFormatAndTheFieldIsNamed() async throws {
        let directory = try Peers.scratchDirectory("sink-linebreak")
        let env = directory + "/db.env", json = directory + "/db.json"
        let config = sinkAgentConfig([("db", "gcp", "    sinks: [{path: \(env), format: env}, {path: \(json), format: json}]")])
            .replacingOccurrences(of: "database: kong", with: #"database: "kong\nEVIL=1""#)
        let fixture = try await EmulatedAgent(label: "sink-linebreak", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            _ = try await agent.credential("db")
            try await waitUntil("the json sink is written", timeout: 15) { FileManager.default.fileExists(atPath: json) }
            try await waitUntil("the env sink is refused", timeout: 15) {
                agent.log.contains("sink \(env): the credential's database holds a line break or NUL, which the env format cannot carry (one value per line); use the json format or a template for it")
            }
            #expect(!FileManager.default.fileExists(atPath: env))
            // `get` prints what a sink of that format holds, and refuses alike.
            let get = try await runCredagent(["get", "db", "--socket", agent.socketPath, "--format", "env"])
            #expect(get.status == 1, "\(get.stdout)")
            #expect(get.stderr.contains("the credential's database holds a line break or NUL, which the env format cannot carry"), "\(get.stderr)")
            #expect(!get.stdout.contains("EVIL"))
        } cleanup: {
            await fixture.stop()
        }
    }

    /// Whether this process may mount a file system (root, and a kernel or container that lets it).
    static let canMount: Bool = {
        let probe = NSTemporaryDirectory() + "/credagent-mount-probe-\(getpid())"
        guard mkdir(probe, 0o700) == 0 else { return false }
        defer { rmdir(probe) }
        guard mount("tmpfs", probe, "tmpfs", UInt(MS_RDONLY), "size=64k") == 0 else { return false }
        umount2(probe, Int32(MNT_DETACH))
        return true
    }()

    @Test(.enabled(if: canMount, "needs to mount a read-only tmpfs: run as root where mounts are allowed"))
    func aSinkOnAReadOnlyMountIsNamedWithTheFixAndTheAgentKeepsServing() async throws {
        let directory = try Peers.scratchDirectory("sink-readonly")
        let readOnly = directory + "/ro"
        #expect(mkdir(readOnly, 0o755) == 0)
        #expect(mount("tmpfs", readOnly, "tmpfs", UInt(MS_RDONLY), "size=1m,mode=0755") == 0)
        defer { umount2(readOnly, Int32(MNT_DETACH)) }
        let config = sinkAgentConfig([("db", "gcp", "    sinks: [{path: \(readOnly)/db.pw, format: password}]")])
        let configPath = directory + "/agent.yaml"
        try config.replacingOccurrences(of: "SOCKET", with: directory + "/agent.sock").write(toFile: configPath, atomically: true, encoding: .utf8)
        let check = try await runCredagent(["config", "check", configPath])
        #expect(check.status == 2)
        #expect(check.stderr.contains("credentials[0].sinks[0]: directory \(readOnly) cannot be written: Read-only file system; the file system is read-only: mount it writable or choose a path on a writable one"), "\(check.stderr)")

        let fixture = try await EmulatedAgent(label: "sink-readonly", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            let credential = try await agent.credential("db")
            try await waitUntil("the failed write is logged", timeout: 10) {
                agent.log.contains("sink \(readOnly)/db.pw:") && agent.log.contains("the file system is read-only: mount it writable")
            }
            #expect(try await agent.request("GET", "/v1/credentials/db").status == 200, "the agent keeps serving")
            // Mounted writable, the next attempt writes the file.
            #expect(mount("tmpfs", readOnly, "tmpfs", UInt(MS_REMOUNT), "size=1m,mode=0755") == 0)
            try await waitUntil("the sink is written after all", timeout: 15) { fileText(readOnly + "/db.pw") == credential["password"] as? String }
            #expect(!agent.log.contains(credential["password"] as? String ?? "-"))
        } cleanup: {
            await fixture.stop()
        }
    }
}
