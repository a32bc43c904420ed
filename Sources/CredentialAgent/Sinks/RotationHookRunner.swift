import CloudAuth
import CredentialModel
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Runs a credential's `on_rotate` after its sinks hold a new version.
///
/// A signal goes to the process whose id is in the pid file. The file is read as a regular file
/// (not through a symbolic link, never a FIFO or device) of a few bytes, and its content never
/// enters a log or an error. The process must be one the file's owner may name: any process when
/// root or the agent's uid owns the file, otherwise only processes whose real uid is the owner's,
/// so that the application's uid cannot have the agent signal anyone else's process. While the
/// file or the process is not there yet (the application is starting), or either is refused, the
/// signal is retried with backoff for up to ``signalPatience``. A command runs with no shell, its
/// output discarded (it could print anything, secrets included), and an environment of `PATH`,
/// `CREDAGENT_CREDENTIAL` and `CREDAGENT_VERSION` only: never the secret. It runs in its own
/// process group, which is killed at its timeout.
struct RotationHookRunner: Sendable {
    let hook: RotationHook
    let credential: String
    let logger: Logger

    /// How long a signal is retried while its process cannot be found.
    static let signalPatience: Duration = .seconds(120)
    /// The most a pid file may hold: a process id with whitespace around it.
    static let pidFileMaxBytes = 32

    func run(version: Int) async {
        switch hook {
        case let .signal(number, name, pidFile):
            await signal(number, name: name, pidFile: pidFile, version: version)
        case let .command(argv, timeout):
            await command(argv, timeout: timeout, version: version)
        }
    }

    /// What reading a pid file found.
    enum PIDFile: Equatable {
        /// A process id, from a file owned by `owner`.
        case pid(pid_t, owner: uid_t)
        case missing
        /// Not usable: why, naming the path and what to do; never the file's content.
        case unusable(String)
    }

    /// The process id in a pid file's bytes: one decimal number (at least 1, not the agent's
    /// own), surrounded by whitespace at most; nil for anything else.
    static func processID(in bytes: [UInt8]) -> pid_t? {
        let whitespace: Set<UInt8> = [0x20, 0x09, 0x0a, 0x0d, 0x0b, 0x0c]
        let digits = bytes.drop { whitespace.contains($0) }.reversed().drop { whitespace.contains($0) }.reversed()
        guard !digits.isEmpty, digits.allSatisfy({ (0x30...0x39).contains($0) }),
              let pid = pid_t(String(decoding: digits, as: UTF8.self)), pid >= 1, pid != getpid() else { return nil }
        return pid
    }

    /// Reads the pid file at `path` without following a symbolic link, without blocking on a
    /// FIFO and without reading more than ``pidFileMaxBytes`` (+1) bytes. Blocks briefly: run it
    /// on the blocking pool.
    static func readPIDFile(_ path: String) -> PIDFile {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            switch errno {
            case ENOENT: return .missing
            case ELOOP:
                return .unusable("pid file \(path) is a symbolic link, which the agent does not follow (whoever can change the link could make it name any file); have the application write its pid file at that path itself")
            case let code:
                return .unusable("pid file \(path) cannot be opened: \(String(cString: strerror(code))); let the agent's uid (\(geteuid())) read it")
            }
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            return .unusable("pid file \(path) cannot be examined: \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            return .unusable("pid file \(path) is \(fileType(info.st_mode)), not a regular file; have the application write its pid to a plain file")
        }
        let bytes = read(fd, atMost: pidFileMaxBytes + 1)
        guard bytes.count <= pidFileMaxBytes, let pid = processID(in: bytes) else {
            let size = bytes.isEmpty ? "it is empty" : "\(max(Int(info.st_size), bytes.count)) bytes, not shown"
            return .unusable("pid file \(path) does not hold a decimal process id (\(size)); the application should write its pid alone")
        }
        return .pid(pid, owner: info.st_uid)
    }

    /// "a FIFO", "a directory", ... for a file type that is not a regular file.
    private static func fileType(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: "a FIFO"
        case S_IFDIR: "a directory"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "a special file"
        }
    }

    /// One attempt at sending a signal.
    enum Attempt: Equatable {
        case sent(pid_t)
        /// Not sent now; worth trying again. `problem` names the file or process and the fix;
        /// a `refused` one is logged as an error, the others (not there yet) as information.
        case retry(problem: String, refused: Bool)
        /// Not sent, and trying again would not help.
        case failed(String)
    }

    /// Reads `pidFile` and sends `number` (written `name`) to the process it names when the
    /// file's owner may name that process. Blocks briefly: run it on the blocking pool.
    static func attempt(_ number: Int32, name: String, pidFile: String) -> Attempt {
        let pid: pid_t, owner: uid_t
        switch readPIDFile(pidFile) {
        case .missing: return .retry(problem: "pid file \(pidFile) does not exist yet", refused: false)
        case let .unusable(why): return .retry(problem: why, refused: true)
        case let .pid(found, fileOwner): (pid, owner) = (found, fileOwner)
        }
        let notRunning = Attempt.retry(problem: "process \(pid) named by \(pidFile) is not running", refused: false)
        // The process's /proc directory stands for that process alone: its status is read, and
        // the signal sent, through it, so that an id reused in between names nobody.
        let process = open("/proc/\(pid)", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard process >= 0 else {
            if errno == ENOENT { return notRunning }
            return .failed("cannot examine process \(pid) named by \(pidFile) (/proc/\(pid)): \(String(cString: strerror(errno))); mount /proc")
        }
        defer { close(process) }
        if owner != 0, owner != geteuid() {
            guard let uid = realUID(process) else { return notRunning }
            guard uid == owner else {
                return .retry(problem: "process \(pid) named by \(pidFile) runs as uid \(uid) but the pid file belongs to uid \(owner), so it is not signalled: a pid file owned by another uid than root or the agent's may name only its owner's processes; have the application write its pid file as the uid it runs as", refused: true)
            }
        }
        guard sendSignal(process, pid, number) != 0 else { return .sent(pid) }
        if errno == ESRCH { return notRunning }
        return .failed("cannot send SIG\(name) to process \(pid) of \(pidFile): \(String(cString: strerror(errno))); run the agent as that process's user or as root")
    }

    /// The real uid in the `Uid:` line of the process's status; nil when it has exited.
    private static func realUID(_ process: Int32) -> uid_t? {
        let fd = openat(process, "status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let line = String(decoding: read(fd, atMost: 4096), as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("Uid:") }
        return line?.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap { uid_t($0) }
    }

    /// The first `limit` bytes of `fd` at most (fewer at its end or on an error).
    private static func read(_ fd: Int32, atMost limit: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: limit)
        var count = 0
        while count < limit {
            let read = bytes[count...].withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if read < 0, errno == EINTR { continue }
            guard read > 0 else { break }
            count += read
        }
        return Array(bytes[..<count])
    }

    /// Sends `number` through the process's /proc directory (`pidfd_send_signal`, glibc's since
    /// 2.36 but outside the Glibc module Swift imports); by its id only on a kernel without that
    /// call (before 5.1). 0, or -1 with errno set, as `kill`.
    private static func sendSignal(_ process: Int32, _ pid: pid_t, _ number: Int32) -> Int32 {
        typealias PIDFDSendSignal = @convention(c) (Int32, Int32, UnsafeMutableRawPointer?, UInt32) -> Int32
        if let symbol = dlsym(nil, "pidfd_send_signal") {
            let result = unsafeBitCast(symbol, to: PIDFDSendSignal.self)(process, number, nil, 0)
            guard result != 0, errno == ENOSYS else { return result }
        }
        return kill(pid, number)
    }

    private func signal(_ number: Int32, name: String, pidFile: String, version: Int) async {
        let clock = ContinuousClock()
        let giveUp = clock.now + Self.signalPatience
        var delay = Duration.milliseconds(100)
        var reported: String?
        while !Task.isCancelled {
            let attempt = (try? await BlockingExecutor.shared.run { Self.attempt(number, name: name, pidFile: pidFile) })
                ?? .failed("the blocking pool is unavailable")
            switch attempt {
            case let .sent(pid):
                logger.info("on_rotate: sent SIG\(name)", metadata: ["version": "\(version)", "pid": "\(pid)"])
                return
            case let .failed(message):
                logger.error("on_rotate: \(message)", metadata: ["version": "\(version)"])
                return
            case let .retry(problem, refused):
                if reported != problem {
                    logger.log(level: refused ? .error : .info, "on_rotate: \(problem); retrying", metadata: ["version": "\(version)"])
                    reported = problem
                }
                guard clock.now < giveUp else {
                    logger.error("on_rotate: SIG\(name) not sent for version \(version): \(problem) (gave up after \(Self.signalPatience.components.seconds) s)")
                    return
                }
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
            process = try SpawnedProcess(argv: argv, environment: environment, attachment: .isolated)
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
