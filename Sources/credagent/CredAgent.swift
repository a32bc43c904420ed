import ArgumentParser
import Foundation

/// The process's entry point: runs ``CredAgent`` on Swift's concurrency pool (a command in plain
/// form, ``PlainCommandLine``, on the main thread) and blocks the main thread until it is done.
/// An async `main` would end the main thread with `pthread_exit` instead,
/// which unwinds the thread's stack through the executable's unwind tables and so keeps about half
/// a megabyte of them resident for the life of the sidecar.
@main
enum Entry {
    static func main() {
        limitMallocArenas()
        let finished = DispatchSemaphore(value: 0)
        if let plain = PlainCommandLine(Array(CommandLine.arguments.dropFirst())) {
            startHere {
                await CredAgent.main(plain: plain)
                finished.signal()
            }
        } else {
            // Detached: `main` runs on the main actor, whose queue the blocked thread never drains.
            Task.detached {
                await CredAgent.main(plain: nil)
                finished.signal()
            }
        }
        finished.wait()
    }

    /// Runs `operation` on this thread until it first suspends, which the commands in plain form
    /// never do: they start no thread. Every other command runs on Swift's cooperative pool from
    /// the start: the sidecar allocating from the main thread's malloc arena and freeing from the
    /// pool's held 10,000 credentials in 166-190 MB instead of 130 MB. Not on the main actor, whose
    /// queue the blocked main thread never drains, should the operation suspend after all.
    private nonisolated static func startHere(_ operation: @escaping @Sendable () async -> Void) {
        Task.immediate { await operation() }
    }

    /// glibc gives each thread that allocates while others hold the lock an arena of its own, up to
    /// eight per core, and memory freed in one arena is not reused by another: with thousands of
    /// credentials the agent's heap grew from 125 MB to 160-230 MB from run to run. Two arenas keep it
    /// at 125-140 MB (docs/OPERATIONS.md, "Memory footprint"). Set before any other thread starts;
    /// `MALLOC_ARENA_MAX` in the environment still decides when set.
    private static func limitMallocArenas() {
        // mallopt is glibc's, outside the Glibc module Swift imports: found by name (RTLD_DEFAULT).
        typealias Mallopt = @convention(c) (_ parameter: Int32, _ value: Int32) -> Int32
        let arenaMax: Int32 = -8  // M_ARENA_MAX in malloc.h
        guard getenv("MALLOC_ARENA_MAX") == nil, let mallopt = dlsym(nil, "mallopt") else { return }
        _ = unsafeBitCast(mallopt, to: Mallopt.self)(arenaMax, 2)
    }
}

/// The `credagent` command: the sidecar and its tools, one binary.
struct CredAgent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credagent",
        abstract: "Short-lived cloud credentials for gateways, served over a Unix socket.",
        discussion: "Exit codes: 0 ok, 1 check or fetch failed, 2 usage or configuration error, 3 agent unreachable.",
        version: BuildInfo.current.line,
        subcommands: [
            TokenCommand.self,
            RunCommand.self,
            GetCommand.self,
            ListCommand.self,
            ConfigCommand.self,
            EmulateCommand.self,
            TestCommand.self,
            HealthCommand.self,
            WaitCommand.self,
            VersionCommand.self,
            ExecCommand.self,
            DoctorCommand.self,
        ]
    )

    /// Parses and runs the command, mapping argument errors to exit code 2 (ArgumentParser's own
    /// default is 64) so that every usage error exits the same way. A command line in plain form,
    /// `plain`, skips ArgumentParser (``PlainCommandLine``).
    static func main(plain: PlainCommandLine?) async {
        do {
            if let plain {
                try await plain.run()
                return
            }
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}
