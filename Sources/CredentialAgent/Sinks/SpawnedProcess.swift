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
/// Every child this process starts is one of these: ``ChildReaper`` leaves them to their owner.
public final class SpawnedProcess: Sendable {
    public let pid: pid_t
    private let attachment: Attachment
    /// Set once the child has exited, under the lock, before it is reaped.
    private let exited = NIOLockedValueBox(false)

    /// How the child is attached to this process.
    public enum Attachment: Sendable {
        /// `credagent exec`'s command: this process's standard input, output and error, its
        /// process group (the terminal's job control reaches it) and the descriptors it was
        /// handed without close-on-exec, as a shell passes them on.
        case inherited
        /// A hook: standard input, output and error on `/dev/null` (its output could hold
        /// anything), no other descriptor (not the agent's sockets), and a process group of its
        /// own, so that ``signal(_:)`` reaches what it started in the background too.
        case isolated
    }

    /// Starts `argv` (`argv[0]` an absolute path, or a name looked up in `PATH` of this process)
    /// with exactly `environment`. Throws a message naming the program when it cannot be started.
    public init(argv: [String], environment: [String: String], attachment: Attachment) throws(SinkError) {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        var flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if case .isolated = attachment {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
            guard Self.closeFrom(3, &actions) == 0 else {
                throw SinkError(message: "cannot start \(argv[0]): this C library cannot close the agent's descriptors in a child (glibc 2.34 or later can)")
            }
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        let arguments = argv.map { strdup($0) } + [nil]
        let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in arguments + variables { free(pointer) }
        }
        var pid: pid_t = 0
        // Started and recorded as one step, so that the reaper never takes it for an orphan.
        let result = ChildReaper.ours.withLockedValue { ours in
            let result = argv[0].contains("/")
                ? posix_spawn(&pid, argv[0], &actions, &attributes, arguments, variables)
                : posix_spawnp(&pid, argv[0], &actions, &attributes, arguments, variables)
            if result == 0 { ours.insert(pid) }
            return result
        }
        guard result == 0 else {
            throw SinkError(message: "cannot start \(argv[0]): \(String(cString: strerror(result)))")
        }
        self.pid = pid
        self.attachment = attachment
    }

    /// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34), outside the Glibc module Swift
    /// imports: found by name. -1 when this C library has none.
    private static func closeFrom(_ lowest: Int32, _ actions: inout posix_spawn_file_actions_t) -> Int32 {
        typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return -1 }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)(&actions, lowest)
    }

    /// Sends `signal` unless the child has already exited (to its whole process group when it
    /// has one of its own); true when it was sent.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        let target = attachment == .isolated ? -pid : pid
        return exited.withLockedValue { exited in
            !exited && kill(target, signal) == 0
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
            ChildReaper.ours.withLockedValue { ours in
                while waitpid(pid, &status, 0) < 0, errno == EINTR {}
                ours.remove(pid)
            }
            let low = status & 0x7f
            return low == 0 ? .exited((status >> 8) & 0xff) : .signalled(low)
        }) ?? .exited(-1)
    }
}

/// Collects the exit of every child this process did not start itself, when it runs as PID 1 (a
/// container's entry point): the kernel makes PID 1 the parent of every orphaned process, such as
/// what a hook started in the background, and a child nobody waits for stays a zombie.
public enum ChildReaper {
    /// The children a ``SpawnedProcess`` started and will reap itself.
    fileprivate static let ours = NIOLockedValueBox(Set<pid_t>())
    /// How often exited orphans are looked for.
    static let interval: Duration = .seconds(1)

    /// Reaps orphans every ``interval`` until cancelled; returns at once unless this process is
    /// PID 1.
    public static func run() async {
        guard getpid() == 1 else { return }
        while (try? await Task.sleep(for: interval)) != nil {
            reapOrphans()
        }
    }

    /// Reaps exited children that are not ours, without blocking. One of ours that has exited
    /// ends the round: its owner reaps it at once, and the next round sees past it.
    static func reapOrphans() {
        ours.withLockedValue { ours in
            while true {
                var info = siginfo_t()
                guard waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 else { return }
                let pid = info._sifields._sigchld.si_pid
                guard pid != 0, !ours.contains(pid) else { return }
                var status: Int32 = 0
                waitpid(pid, &status, WNOHANG)
            }
        }
    }
}
