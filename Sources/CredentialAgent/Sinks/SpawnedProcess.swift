import CloudAuth
import Foundation
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended.
public enum ChildExit: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)

    /// The status a shell reports: the exit code, or 128 + the signal's number.
    public var shellStatus: Int32 {
        switch self {
        case let .exited(code): code
        case let .signalled(signal): 128 + signal
        }
    }

    public var description: String {
        switch self {
        case let .exited(code): "exited with status \(code)"
        case let .signalled(signal): "killed by signal \(signal)"
        }
    }
}

/// A child process started with `posix_spawn`: every signal at its default disposition and none
/// blocked (whatever the agent ignores or traps), so that it can be signalled as if started from
/// a shell. Signals sent after it has been reaped go nowhere: its id is never reused under us.
public final class SpawnedProcess: Sendable {
    public let pid: pid_t
    /// Set once the child has exited, under the lock, before it is reaped.
    private let exited = NIOLockedValueBox(false)

    /// Where the child's standard input, output and error go.
    public enum StandardIO: Sendable {
        /// The caller's own (for `credagent exec`).
        case inherited
        /// `/dev/null` for all three (for hooks, whose output could hold anything).
        case discarded
    }

    /// Starts `argv` (`argv[0]` an absolute path, or a name looked up in `PATH` of this process)
    /// with exactly `environment`. Throws a message naming the program when it cannot be started.
    public init(argv: [String], environment: [String: String], standardIO: StandardIO) throws(SinkError) {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if case .discarded = standardIO {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        let arguments = argv.map { strdup($0) } + [nil]
        let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in arguments + variables { free(pointer) }
        }
        var pid: pid_t = 0
        let result = argv[0].contains("/")
            ? posix_spawn(&pid, argv[0], &actions, &attributes, arguments, variables)
            : posix_spawnp(&pid, argv[0], &actions, &attributes, arguments, variables)
        guard result == 0 else {
            throw SinkError(message: "cannot start \(argv[0]): \(String(cString: strerror(result)))")
        }
        self.pid = pid
    }

    /// Sends `signal` unless the child has already exited; true when it was sent.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        exited.withLockedValue { exited in
            !exited && kill(pid, signal) == 0
        }
    }

    /// Waits (on the blocking pool) until the child exits, and reaps it.
    public func exit() async -> ChildExit {
        let pid = self.pid
        let exited = self.exited
        return (try? await BlockingExecutor.shared.run { () -> ChildExit in
            var info = siginfo_t()
            // Wait without reaping, so that `signal` can never hit a reused id.
            while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0, errno == EINTR {}
            exited.withLockedValue { $0 = true }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            let low = status & 0x7f
            return low == 0 ? .exited((status >> 8) & 0xff) : .signalled(low)
        }) ?? .exited(-1)
    }
}
