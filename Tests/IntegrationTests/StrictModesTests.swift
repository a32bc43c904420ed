import CloudAuth
import CredentialAgent
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A credential whose fetches fail fast: these tests are about what the agent trusts, not what
/// it fetches.
private func minimalConfig(socket: String) -> String {
    """
    socket:
      path: \(socket)
    credentials:
      - {name: cache, kind: redis, provider: gcp, host: 10.0.0.1}
    """
}
private let unreachableMetadata = ["GCE_METADATA_HOST": "127.0.0.1:1"]

/// A new scratch directory as the agent names it in errors: its real path.
private func realScratchDirectory(_ label: String) throws -> String {
    let directory = try Peers.scratchDirectory(label)
    guard let resolved = realpath(directory, nil) else { throw TestFailure("cannot resolve \(directory)") }
    defer { free(resolved) }
    return String(cString: resolved)
}

/// Another user's ways in: a config file or socket directory they can write, a socket of their
/// own in the agent's place. Each is attacked against the real binary.
@Suite(.serialized) struct StrictModesTests {
    @Test func aConfigFileOrSocketDirectoryOthersCanWriteStopsTheAgentNamingThePathAndTheFix() async throws {
        let directory = try realScratchDirectory("strict-modes")
        chmod(directory, 0o755)
        let configPath = directory + "/agent.yaml"
        let socketDirectory = directory + "/run"
        try minimalConfig(socket: socketDirectory + "/agent.sock").write(toFile: configPath, atomically: true, encoding: .utf8)
        func run() async throws -> ProcessResult {
            try await runCredagent(["run", "--config", configPath], environment: unreachableMetadata)
        }

        chmod(configPath, 0o666)
        let writableConfig = try await run()
        #expect(writableConfig.status == 2)
        #expect(writableConfig.stderr.contains("\(configPath) is writable by every user (mode 0666); chmod o-w \(configPath)"),
                "\(writableConfig.stderr)")

        chmod(configPath, 0o664)
        let groupWritable = try await run()
        #expect(groupWritable.status == 2)
        #expect(groupWritable.stderr.contains("chmod g-w \(configPath)"), "\(groupWritable.stderr)")

        chmod(configPath, 0o644)
        chown(configPath, 65534, 65534)
        let foreignOwner = try await run()
        #expect(foreignOwner.status == 2)
        #expect(foreignOwner.stderr.contains("\(configPath) is owned by uid 65534"), "\(foreignOwner.stderr)")
        chown(configPath, 0, 0)

        // A directory above the config that anyone may write: the file could be replaced.
        chmod(directory, 0o777)
        let writableParent = try await run()
        #expect(writableParent.status == 2)
        #expect(writableParent.stderr.contains("\(directory) is writable by every user (mode 0777)"), "\(writableParent.stderr)")
        // With the sticky bit (as /tmp) others cannot replace entries they do not own.
        chmod(directory, 0o1777)
        mkdir(socketDirectory, 0o777)
        chmod(socketDirectory, 0o777)
        let writableSocketDirectory = try await run()
        #expect(writableSocketDirectory.status == 2)
        #expect(writableSocketDirectory.stderr.contains(
            "\(socketDirectory): is writable by every user (mode 0777), so another user could replace the agent's socket; chmod o-w \(socketDirectory)"),
                "\(writableSocketDirectory.stderr)")
        // The socket's own directory gets no sticky exemption: others could still add a socket.
        chmod(socketDirectory, 0o1777)
        #expect(try await run().status == 2)
        #expect(!FileManager.default.fileExists(atPath: socketDirectory + "/agent.sock"))

        // Unless the config says the directory is shared on purpose (a Kubernetes emptyDir);
        // the directories above it are still checked.
        chmod(directory, 0o755)
        chmod(socketDirectory, 0o777)
        let sharedConfig = directory + "/shared.yaml"
        try minimalConfig(socket: socketDirectory + "/agent.sock").replacingOccurrences(
            of: "socket:\n", with: "socket:\n  shared_directory: true\n").write(toFile: sharedConfig, atomically: true, encoding: .utf8)
        chmod(sharedConfig, 0o644)
        let shared = try await AgentProcess(label: "strict-modes-shared", config: String(contentsOfFile: sharedConfig, encoding: .utf8)
            .replacingOccurrences(of: socketDirectory + "/agent.sock", with: "SOCKET"), environment: unreachableMetadata,
            socketDirectory: socketDirectory)
        #expect(try await shared.request("GET", "/v1/health").status == 200)
        #expect(shared.log.contains("socket.shared_directory"))
        #expect(await shared.stop() == 0)

        chmod(socketDirectory, 0o750)
        chmod(directory, 0o755)
        // A symbolic link to the sound config, in a directory anyone may write: it could be
        // pointed elsewhere.
        let open = directory + "/open"
        mkdir(open, 0o777)
        chmod(open, 0o777)
        symlink(configPath, open + "/agent.yaml")
        let linked = try await runCredagent(["run", "--config", open + "/agent.yaml"], environment: unreachableMetadata)
        #expect(linked.status == 2)
        #expect(linked.stderr.contains("\(open) is writable by every user (mode 0777); chmod o-w \(open)"), "\(linked.stderr)")

        let agent = try await AgentProcess(label: "strict-modes-ok", config: minimalConfig(socket: "SOCKET"),
                                           environment: unreachableMetadata)
        #expect(try await agent.request("GET", "/v1/health").status == 200)
        #expect(await agent.stop() == 0)
    }

    @Test func aReloadOfAConfigOthersCanWriteIsRejectedAndTheRunningConfigStays() async throws {
        let agent = try await AgentProcess(label: "strict-modes-reload", config: minimalConfig(socket: "SOCKET"),
                                           environment: unreachableMetadata)
        let granted = minimalConfig(socket: agent.socketPath) + "\n  - {name: stolen, kind: redis, provider: gcp, host: 10.0.0.2}\n"
        try granted.write(toFile: agent.configPath, atomically: true, encoding: .utf8)
        chmod(agent.configPath, 0o666)
        agent.signal(SIGHUP)
        try await waitUntil("the reload is rejected", timeout: 20) { agent.log.contains("reload rejected") }
        #expect(agent.log.contains("is writable by every user (mode 0666); chmod o-w"), "\(agent.log)")
        let (_, listing) = try await agent.json("GET", "/v1/credentials")
        let names = (listing["credentials"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(names == ["cache"])
        chmod(agent.configPath, 0o644)
        agent.signal(SIGHUP)
        try await waitUntil("the fixed config is applied", timeout: 20) { try await agent.state("stolen") != nil }
        #expect(await agent.stop() == 0)
    }

    @Test func aConfigThatIsNotARegularFileOrTooLargeIsReportedAsSuch() async throws {
        let directory = try realScratchDirectory("config-file-kind")
        let fifo = directory + "/agent.yaml"
        #expect(mkfifo(fifo, 0o600) == 0)
        // Opening a FIFO for reading would wait for a writer: the check must answer at once.
        let pipe = try await runCredagent(["config", "check", fifo])
        #expect(pipe.status == 2)
        #expect(pipe.stderr.contains("\(fifo): 1 problem:\n  is a FIFO (named pipe), not a regular file"), "\(pipe.stderr)")
        let runPipe = try await runCredagent(["run", "--config", fifo])
        #expect(runPipe.status == 2)
        #expect(runPipe.stderr.contains("FIFO"))

        let folder = try await runCredagent(["config", "check", directory])
        #expect(folder.status == 2)
        #expect(folder.stderr.contains("is a directory, not a regular file"), "\(folder.stderr)")

        let large = directory + "/large.yaml"
        let text = minimalConfig(socket: directory + "/agent.sock") + "\n" + String(repeating: "# padding\n", count: 110_000)
        try text.write(toFile: large, atomically: true, encoding: .utf8)
        let tooLarge = try await runCredagent(["config", "check", large])
        #expect(tooLarge.status == 2)
        #expect(tooLarge.stderr.contains("is \(text.utf8.count) bytes; a config file may be at most 1048576 bytes (1 MiB)"),
                "\(tooLarge.stderr)")
        // The same text under the limit is a valid config: the size alone refused it.
        try String(text.prefix(900_000)).write(toFile: large, atomically: true, encoding: .utf8)
        #expect(try await runCredagent(["config", "check", large]).status == 0)
    }

    @Test(.enabled(if: getuid() == 0, "needs root to serve a socket as nobody"))
    func clientsRefuseASocketServedByAnotherUser() async throws {
        let directory = try realScratchDirectory("impostor")
        // The attack: a socket directory anyone may write, where another user put their socket.
        chmod(directory, 0o777)
        let socketPath = directory + "/agent.sock"
        let body = #"{"name":"orders-db","kind":"postgres","provider":"aws","version":1,"username":"kong","password":"impostor-password","issued_at":"2026-01-01T00:00:00Z","expires_at":"2099-01-01T00:00:00Z","refresh_at":"2099-01-01T00:00:00Z","connection":{"host":"evil.example","port":5432,"database":"kong","sslmode":"disable"}}"#
        let server = """
            import socket, sys
            body = sys.argv[2].encode()
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(sys.argv[1])
            listener.listen(16)
            print("ready", flush=True)
            while True:
                connection, _ = listener.accept()
                try:
                    connection.recv(65536)
                    connection.sendall(b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\nconnection: close\\r\\ncontent-length: %d\\r\\n\\r\\n" % len(body) + body)
                except OSError:
                    pass  # a client that hung up
                connection.close()
            """
        let impostor = Process()
        impostor.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        impostor.arguments = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", server, socketPath, body]
        impostor.standardOutput = FileHandle.nullDevice
        try impostor.run()
        // SIGKILL: a child may inherit a mask that blocks SIGTERM from the test process.
        defer { kill(impostor.processIdentifier, SIGKILL); impostor.waitUntilExit() }
        try await waitUntil("the impostor listens", timeout: 20) { FileManager.default.fileExists(atPath: socketPath) }
        var info = stat()
        stat(socketPath, &info)
        #expect(info.st_uid == 65534)

        for command in [["get", "orders-db"], ["list"], ["test", "orders-db"]] {
            let refused = try await runCredagent(command + ["--socket", socketPath])
            #expect(refused.status == 3, "\(command): \(refused.stderr)")
            #expect(refused.stderr.contains("\(socketPath) is served by uid 65534, not by a trusted uid (0)"), "\(refused.stderr)")
            #expect(!refused.stdout.contains("impostor-password"))
        }
        // The refusal is the uid check: naming nobody as the agent's uid lets the same socket answer.
        let trusted = try await runCredagent(["get", "orders-db", "--socket", socketPath, "--server-uid", "nobody"])
        #expect(trusted.status == 0, "\(trusted.stderr)")
        #expect(trusted.stdout.contains("impostor-password"))
        let byEnvironment = try await runCredagent(["get", "orders-db", "--socket", socketPath, "--field", "password"],
                                                   environment: ["CREDAGENT_SERVER_UID": "65534"])
        #expect(byEnvironment.stdout == "impostor-password\n")
        let badUID = try await runCredagent(["get", "orders-db", "--socket", socketPath, "--server-uid", "no-such-user-here"])
        #expect(badUID.status == 2)
        #expect(badUID.stderr.contains("--server-uid: 'no-such-user-here' is neither a uid nor a known user name"))
    }
}
