import CloudAuth
import CloudEmulator
import CredentialAgent
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A `credagent run` child process with its own config, socket and log file.
final class AgentProcess: @unchecked Sendable {
    let directory: String
    let configPath: String
    let socketPath: String
    let logPath: String
    private let process = Process()

    /// Writes `config` (YAML; `SOCKET` is replaced by the socket path) and starts the agent with
    /// `environment` (plus PATH and HOME). Waits until the socket answers `/v1/health`.
    init(label: String, config: String, environment: [String: String], logLevel: String = "debug",
         socketDirectory: String? = nil) async throws {
        directory = try Peers.scratchDirectory(label)
        configPath = directory + "/agent.yaml"
        socketPath = (socketDirectory ?? directory + "/run") + "/agent.sock"
        logPath = directory + "/agent.log"
        try config.replacingOccurrences(of: "SOCKET", with: socketPath).write(toFile: configPath, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: Peers.credagentBinary)
        process.arguments = ["run", "--config", configPath, "--log-level", logLevel]
        var env = environment
        let inherited = ProcessInfo.processInfo.environment
        env["PATH"] = inherited["PATH"]
        env["HOME"] = inherited["HOME"]
        // Under `scripts/test --sanitize` the agent reports with the project's suppressions, and
        // a report fails its stop (a leak at exit under address, a race under thread).
        for name in ["LSAN_OPTIONS", "TSAN_OPTIONS"] { env[name] = inherited[name] }
        process.environment = env
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // A liveness wait, generous for a loaded machine; an agent that exits fails at once, with its log.
        try await waitUntil("the agent answers on \(socketPath)", timeout: 60) {
            guard self.process.isRunning else {
                throw TestFailure("the agent exited (status \(self.process.terminationStatus)); its log:\n\(self.log.suffix(2000))")
            }
            return (try? await self.request("GET", "/v1/health"))?.status == 200
        }
    }

    var isRunning: Bool { process.isRunning }
    var pid: Int32 { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Sends SIGTERM and waits for the exit status. An agent that does not exit 0 prints the end
    /// of its log to the test's output, so that the failed expectation comes with its reason.
    func stop() async -> Int32 {
        if process.isRunning { signal(SIGTERM) }
        for _ in 0..<200 where process.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
        let killed = process.isRunning
        if killed { signal(SIGKILL) }
        process.waitUntilExit()
        if process.terminationStatus != 0 {
            let how = killed ? "did not stop within 10 s and was killed" : "exited with status \(process.terminationStatus)"
            FileHandle.standardError.write(Data("agent \(directory) \(how); the end of its log:\n\(log.suffix(4000))\n".utf8))
        }
        return process.terminationStatus
    }

    /// A request over the socket with the project's libcurl client.
    func request(_ method: String, _ path: String, timeout: Double = 10) async throws -> HTTPResponse {
        try await CurlHTTPClient().execute(HTTPRequest(
            method: method, url: "http://localhost\(path)", timeouts: HTTPTimeouts(connect: 2, total: timeout),
            unixSocketPath: socketPath))
    }

    /// The decoded JSON object of a response.
    func json(_ method: String, _ path: String) async throws -> (status: Int, body: [String: Any]) {
        let response = try await request(method, path)
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
        return (response.status, object)
    }

    /// The credential `name` as the agent serves it; while it is still being fetched (503, as a
    /// client of the API would see it), asks again, for up to 60 s.
    func credential(_ name: String) async throws -> [String: Any] {
        var answer: (status: Int, body: [String: Any]) = (0, [:])
        try await waitUntil("GET \(name) answers 200", timeout: 60) {
            answer = try await self.json("GET", "/v1/credentials/\(name)")
            guard answer.status == 200 || answer.status == 503 else {
                throw TestFailure("GET \(name) answered \(answer.status): \(answer.body)")
            }
            return answer.status == 200
        }
        return answer.body
    }

    /// The `state` of `name` in the listing.
    func state(_ name: String) async throws -> String? {
        let (_, body) = try await json("GET", "/v1/credentials")
        let rows = body["credentials"] as? [[String: Any]] ?? []
        return rows.first { $0["name"] as? String == name }?["state"] as? String
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` every 100 ms until it holds or `timeout` seconds pass.
func waitUntil(_ what: String, timeout: Double, _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        // Looked at once more after the deadline: a sleep a loaded machine wakes late is not a timeout.
        let late = Date() >= deadline
        if try await condition() { return }
        if late { break }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw TestFailure("timed out after \(timeout) s waiting until \(what)")
}

/// Sends `bytes` on a fresh connection to the Unix socket at `path` and returns everything the
/// server sends back before closing (or `timeout` seconds).
func rawExchange(_ path: String, _ bytes: [UInt8], timeout: Int = 5) throws -> String {
    let fd = try connectUnix(path)
    defer { close(fd) }
    var timeoutValue = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeoutValue, socklen_t(MemoryLayout<timeval>.size))
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count <= 0 { break }
        received.append(contentsOf: buffer[0..<count])
    }
    return String(decoding: received, as: UTF8.self)
}

/// Sends `bytes` to the Unix socket at `path` one byte every `interval` seconds, as a slow or
/// hostile client would, until the server answers or closes or `limit` seconds pass. Returns what
/// the server sent and after how many seconds.
func trickleExchange(_ path: String, _ bytes: [UInt8], interval: Double, limit: Double) throws -> (answer: String, seconds: Double) {
    let fd = try connectUnix(path)
    defer { close(fd) }
    let start = Date()
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    var next = 0
    while Date().timeIntervalSince(start) < limit {
        if next < bytes.count {
            _ = bytes[next...next].withUnsafeBytes { send(fd, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) }
            next += 1
        }
        usleep(useconds_t(interval * 1_000_000))
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if count > 0 { received.append(contentsOf: buffer[0..<count]) }
        if count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { break }
    }
    return (String(decoding: received, as: UTF8.self), Date().timeIntervalSince(start))
}

/// One kept-open client connection to the agent's socket, for tests of connection limits.
final class SocketConnection {
    private let fd: Int32

    init(_ path: String) throws {
        fd = try connectUnix(path)
    }

    deinit { close(fd) }

    /// Sends `GET path` and returns the response's status, or nil when the server closed the
    /// connection instead of answering (or sent nothing within `timeout` seconds).
    func get(_ path: String, timeout: Double = 5) -> Int? {
        let request = Array("GET \(path) HTTP/1.1\r\nhost: localhost\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { return nil }
            if count > 0 { received.append(contentsOf: buffer[0..<count]) }
            let text = String(decoding: received, as: UTF8.self)
            if let headEnd = text.range(of: "\r\n\r\n"),
               let length = text[..<headEnd.lowerBound].split(separator: "\r\n")
                   .first(where: { $0.lowercased().hasPrefix("content-length:") })
                   .flatMap({ Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) }),
               received.count >= text[..<headEnd.upperBound].utf8.count + length {
                return Int(text.dropFirst("HTTP/1.1 ".count).prefix(3))
            }
            if count < 0 { usleep(10_000) }
        }
        return nil
    }

    /// Whether the server closes the connection, sending nothing, within `timeout` seconds.
    func closedByServer(within timeout: Double) -> Bool {
        var byte: UInt8 = 0
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let count = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
            if count == 0 { return true }
            if count > 0 || (errno != EAGAIN && errno != EWOULDBLOCK) { return count < 0 }
            usleep(20_000)
        }
        return false
    }
}

/// A connected stream socket to the Unix socket at `path`.
func connectUnix(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket() failed") }
    let connected = withUnixAddress(path) { connect(fd, $0, $1) }
    guard connected == 0 else {
        close(fd)
        throw TestFailure("connect(\(path)) failed: errno \(errno)")
    }
    return fd
}

/// Calls `body` with the `sockaddr_un` of `path` and its size (for bind or connect).
func withUnixAddress<Result>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { buffer in
        let name = Array(path.utf8)
        buffer.copyBytes(from: name)
        buffer[name.count] = 0
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// An emulator for Azure and GCP identities, started in this process.
func startEmulator(tokenLifetime: TimeInterval) async throws -> CloudEmulator {
    var configuration = CloudEmulator.Configuration()
    configuration.tokenLifetime = tokenLifetime
    return try await CloudEmulator.start(configuration)
}

/// An agent process whose Azure and GCP identities come from a cloud emulator started for it, so
/// that a test has one cleanup: ``stop()`` stops both.
struct EmulatedAgent {
    let emulator: CloudEmulator
    let agent: AgentProcess

    /// Starts the emulator (tokens of `tokenLifetime` seconds), then the agent with `config` (see
    /// ``AgentProcess``) in the emulator's environment. When the agent does not start, the
    /// emulator is stopped.
    init(label: String, config: String, tokenLifetime: TimeInterval = 600) async throws {
        let emulator = try await startEmulator(tokenLifetime: tokenLifetime)
        do {
            agent = try await AgentProcess(label: label, config: config, environment: cloudEnvironment(emulator))
        } catch {
            try? await emulator.stop()
            throw error
        }
        self.emulator = emulator
    }

    /// Stops the agent (unless it has stopped already), then the emulator.
    func stop() async {
        _ = await agent.stop()
        try? await emulator.stop()
    }
}

/// The environment that points an agent's identities at `emulator` and (when running) moto.
func cloudEnvironment(_ emulator: CloudEmulator) -> [String: String] {
    var env = emulator.environment(for: .azureIMDS).merging(emulator.environment(for: .gcpMetadata)) { $1 }
    if let moto = Peers.moto {
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = moto + "/"
        env["AWS_REGION"] = "us-east-1"
    }
    return env
}

/// An agent config with the emulator's Azure and GCP credentials only (no moto needed): `az-pg`
/// (postgres) and `gcp-redis` (redis) on the socket `SOCKET`. `socket` holds more lines of the
/// `socket:` section; a failed refresh is retried within `backoffMax`.
func emulatorAgentConfig(socket: [String] = [], backoffMax: String = "1s") -> String {
    """
    socket:
      path: SOCKET
    \(socket.map { "  \($0)\n" }.joined())refresh:
      backoff: {initial: 200ms, max: \(backoffMax)}
    credentials:
      - name: az-pg
        kind: postgres
        provider: azure
        host: 127.0.0.1
        user: kong-identity
        sslmode: disable
      - name: gcp-redis
        kind: redis
        provider: gcp
        host: 127.0.0.1
        tls: false
    """
}

/// ``emulatorAgentConfig(socket:backoffMax:)`` with its defaults.
let emulatorOnlyConfig = emulatorAgentConfig()

/// The resident set of process `pid`, in MB.
func residentMB(_ pid: Int32) -> Double {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return Double(line.split(separator: " ").dropFirst().first ?? "0").map { $0 / 1024 } ?? 0
}
