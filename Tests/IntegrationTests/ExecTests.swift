import CloudAuth
import CloudEmulator
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A `credagent exec` child process that the test can signal while it runs.
private final class ExecProcess: @unchecked Sendable {
    private let process = Process()
    let stderrPath: String

    init(_ arguments: [String], directory: String) throws {
        stderrPath = directory + "/exec.err"
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: Peers.credagentBinary)
        process.arguments = ["exec"] + arguments
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// The exit status, waiting up to `timeout` seconds (then it is killed and the test fails).
    func status(timeout: Double = 20) async throws -> Int32 {
        try await waitUntil("credagent exec exits", timeout: timeout) { !self.process.isRunning }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// `credagent exec` against the real agent (identities from the cloud emulator).
@Suite(.serialized) struct ExecTests {
    private let config = sinkAgentConfig([("db", "gcp", ""), ("cache", "azure", "")])

    @Test func theCommandGetsTheFieldsAndItsExitStatusIsKept() async throws {
        let directory = try Peers.scratchDirectory("exec-env")
        let fixture = try await EmulatedAgent(label: "exec-env", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            let db = try await agent.credential("db"), cache = try await agent.credential("cache")
            let out = directory + "/out"
            let result = try await runCredagent([
                "exec", "--socket", agent.socketPath, "--env", "PGPASSWORD=db.password", "--env", "PGHOST=db.connection.host",
                "--env", "PGDATABASE=db.database", "--env", "REDIS_PASSWORD=cache.password", "--env", "VERSION=db.version", "--",
                "/bin/sh", "-c", "printf '%s|%s|%s|%s|%s' \"$PGPASSWORD\" \"$PGHOST\" \"$PGDATABASE\" \"$REDIS_PASSWORD\" \"$VERSION\" > \(out); exit 7",
            ])
            #expect(result.status == 7, "exec exits with the command's status: \(result.stderr)")
            #expect(fileText(out) == "\(db["password"] as? String ?? "-")|127.0.0.1|kong|\(cache["password"] as? String ?? "-")|1")
            #expect(!result.stderr.contains(db["password"] as? String ?? "-"))

            let killed = try await runCredagent(["exec", "--socket", agent.socketPath, "--env", "P=db.password", "--", "/bin/sh", "-c", "kill -USR1 $$"])
            #expect(killed.status == 128 + SIGUSR1, "a command ended by signal N gives 128+N")

            let wrongKind = try await runCredagent(["exec", "--socket", agent.socketPath, "--env", "T=db.token", "--", "/bin/true"])
            #expect(wrongKind.status == 2)
            #expect(wrongKind.stderr.contains("--env T=db.token: db is a postgres credential without a field token (its fields: name, kind"), "\(wrongKind.stderr)")
            let missing = try await runCredagent(["exec", "--socket", agent.socketPath, "--env", "P=db.password", "/bin/true"])
            #expect(missing.status == 2)
            #expect(missing.stderr.contains("'/bin/true' is not an option of exec; put the command after '--'"), "\(missing.stderr)")
            let unknown = try await runCredagent(["exec", "--env", "P=db.passwd", "--", "/bin/true"])
            #expect(unknown.status == 2)
            #expect(unknown.stderr.contains("'passwd' is not a credential field"), "\(unknown.stderr)")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test func theHelpSaysThatAnAgentThatDoesNotAnswerIsWaitedFor() async throws {
        let help = try await runCredagent(["exec", "--help"])
        #expect(help.status == 0, "\(help.stderr)")
        let text = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(text.contains("1 when a credential is unknown or refused (404, 403); 2 for a usage error; 127 when CMD cannot be started. An agent that does not answer is waited for without end"), "\(help.stdout)")
        #expect(!text.contains("3 when"), "exec never gives up on the agent")
    }

    @Test func restartStartsTheCommandAgainWithTheRotatedSecretAndTermEndsIt() async throws {
        let directory = try Peers.scratchDirectory("exec-restart")
        let fixture = try await EmulatedAgent(label: "exec-restart", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            let first = try await agent.credential("db")
            let runs = directory + "/runs"
            let exec = try ExecProcess([
                "--socket", agent.socketPath, "--env", "PW=db.password", "--on-rotation", "restart", "--",
                "/bin/sh", "-c", "echo \"$PW\" >> \(runs); exec sleep 100",
            ], directory: directory)
            try await waitUntil("the command runs", timeout: 60) { fileText(runs) != nil }
            let second = try await rotate(agent, "db", after: 1)
            try await waitUntil("the command runs again", timeout: 20) { (fileText(runs) ?? "").split(separator: "\n").count == 2 }
            #expect((fileText(runs) ?? "").split(separator: "\n").map(String.init) == [first["password"] as? String, second["password"] as? String])
            exec.signal(SIGTERM)
            #expect(try await exec.status() == 128 + SIGTERM, "sleep ended by the forwarded SIGTERM")
        } cleanup: {
            await fixture.stop()
        }
    }

    @Test func signalPolicyAndForwardedSignalsReachTheCommand() async throws {
        let directory = try Peers.scratchDirectory("exec-signal")
        let fixture = try await EmulatedAgent(label: "exec-signal", config: config, tokenLifetime: 3600)
        let agent = fixture.agent
        try await withCleanup {
            _ = try await agent.credential("db")
            let log = directory + "/signals"
            let command = """
                import os, signal, sys, time
                log = sys.argv[1]
                def note(name):
                    with open(log, "a") as f:
                        f.write(name + "\\n")
                signal.signal(signal.SIGUSR1, lambda *_: note("USR1"))
                signal.signal(signal.SIGHUP, lambda *_: note("HUP"))
                def term(*_):
                    note("TERM")
                    sys.exit(0)
                signal.signal(signal.SIGTERM, term)
                note("started")
                while True:
                    time.sleep(0.05)
                """
            let exec = try ExecProcess([
                "--socket", agent.socketPath, "--env", "PW=db.password", "--on-rotation", "signal:USR1", "--",
                "python3", "-c", command, log,
            ], directory: directory)
            try await waitUntil("the command runs", timeout: 60) { fileText(log)?.contains("started") == true }
            _ = try await rotate(agent, "db", after: 1)
            try await waitUntil("the rotation's signal arrives", timeout: 20) { fileText(log)?.contains("USR1") == true }
            exec.signal(SIGHUP)
            try await waitUntil("SIGHUP is passed on", timeout: 10) { fileText(log)?.contains("HUP") == true }
            exec.signal(SIGTERM)
            #expect(try await exec.status() == 0, "the command handled SIGTERM and exited 0: \(fileText(exec.stderrPath) ?? "")")
            #expect(fileText(log) == "started\nUSR1\nHUP\nTERM\n", "each signal once")
        } cleanup: {
            await fixture.stop()
        }
    }
}
