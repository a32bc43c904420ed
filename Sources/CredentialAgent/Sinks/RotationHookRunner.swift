import CloudAuth
import CredentialModel
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Runs a credential's `on_rotate` after its sinks hold a new version.
///
/// A signal goes to the process whose id is in the pid file; while the file or the process is
/// not there yet (the application is starting), or the file holds no process id, it is retried
/// with backoff for up to ``signalPatience``. A command runs with no shell, its output discarded
/// (it could print anything, secrets included), and an environment of `PATH`,
/// `CREDAGENT_CREDENTIAL` and `CREDAGENT_VERSION` only: never the secret. It is killed at its
/// timeout.
struct RotationHookRunner: Sendable {
    let hook: RotationHook
    let credential: String
    let logger: Logger

    /// How long a signal is retried while its process cannot be found.
    static let signalPatience: Duration = .seconds(120)

    func run(version: Int) async {
        switch hook {
        case let .signal(number, name, pidFile):
            await signal(number, name: name, pidFile: pidFile, version: version)
        case let .command(argv, timeout):
            await command(argv, timeout: timeout, version: version)
        }
    }

    /// What a pid file holds.
    enum PIDFileContent: Equatable {
        case pid(pid_t)
        case missing
        /// Not a process id; the text, shortened, for the log.
        case garbage(String)
    }

    /// A pid file's text: one decimal process id (at least 1, not the agent's own), surrounded
    /// by whitespace at most.
    static func parsePIDFile(_ text: String) -> PIDFileContent {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let pid = pid_t(trimmed), pid >= 1, pid != getpid() else {
            let shown = trimmed.unicodeScalars.prefix(40).map { (0x20...0x7e).contains($0.value) ? String($0) : "?" }.joined()
            return .garbage(trimmed.isEmpty ? "nothing" : "'\(shown)\(trimmed.count > 40 ? "..." : "")'")
        }
        return .pid(pid)
    }

    private func readPIDFile(_ path: String) -> PIDFileContent {
        guard let handle = FileHandle(forReadingAtPath: path) else { return .missing }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: 64)) ?? Data()
        return Self.parsePIDFile(String(decoding: data, as: UTF8.self))
    }

    private func signal(_ number: Int32, name: String, pidFile: String, version: Int) async {
        let clock = ContinuousClock()
        let giveUp = clock.now + Self.signalPatience
        var delay = Duration.milliseconds(100)
        var reported: PIDFileContent?
        while !Task.isCancelled {
            let content = (try? await BlockingExecutor.shared.run { readPIDFile(pidFile) }) ?? .missing
            var problem: String
            switch content {
            case let .pid(pid):
                if kill(pid, number) == 0 {
                    logger.info("on_rotate: sent SIG\(name)", metadata: ["version": "\(version)", "pid": "\(pid)"])
                    return
                }
                guard errno == ESRCH else {
                    logger.error("on_rotate: cannot send SIG\(name) to process \(pid) of \(pidFile): \(String(cString: strerror(errno))); run the agent as that process's user or as root")
                    return
                }
                problem = "process \(pid) named by \(pidFile) is not running"
            case .missing:
                problem = "pid file \(pidFile) does not exist yet"
            case let .garbage(text):
                problem = "pid file \(pidFile) holds \(text), not a process id; the application should write its pid alone"
            }
            if reported != content {
                let level: Logger.Level = if case .garbage = content { .error } else { .info }
                logger.log(level: level, "on_rotate: \(problem); retrying", metadata: ["version": "\(version)"])
                reported = content
            }
            guard clock.now < giveUp else {
                logger.error("on_rotate: SIG\(name) not sent for version \(version): \(problem) (gave up after \(Self.signalPatience.components.seconds) s)")
                return
            }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(5))
        }
    }

    private func command(_ argv: [String], timeout: Duration, version: Int) async {
        let environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
            "CREDAGENT_CREDENTIAL": credential, "CREDAGENT_VERSION": String(version),
        ]
        let process: SpawnedProcess
        do {
            process = try SpawnedProcess(argv: argv, environment: environment, standardIO: .discarded)
        } catch {
            logger.error("on_rotate: \(error.message); fix on_rotate.command", metadata: ["version": "\(version)"])
            return
        }
        // The timer is not a child of this task: a newer version waits for this command rather
        // than killing it.
        let timer = Task.detached { () -> Bool in
            do { try await Task.sleep(for: timeout) } catch { return false }
            return process.signal(SIGKILL)
        }
        let exit = await process.exit()
        timer.cancel()
        let timedOut = await timer.value
        if timedOut {
            logger.error("on_rotate: \(argv[0]) was killed after its timeout of \(DurationText.format(timeout)); make it finish sooner or raise on_rotate.timeout",
                         metadata: ["version": "\(version)"])
        } else if exit == .exited(0) {
            logger.info("on_rotate: \(argv[0]) succeeded", metadata: ["version": "\(version)"])
        } else {
            logger.error("on_rotate: \(argv[0]) \(exit) (its output is not logged: it could hold a secret)",
                         metadata: ["version": "\(version)"])
        }
    }
}
