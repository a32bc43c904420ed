import CloudAuth
import Foundation
import NIOConcurrencyHelpers
import Testing
@testable import CredentialAgent
#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory for one test, removed with its content by `body`'s end.
private func withScratchDirectory(_ label: String, _ body: (String) async throws -> Void) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("credagent-\(label)-\(UUID())").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try await body(directory)
}

/// The real uid of process `pid`, from /proc.
private func realUID(_ pid: pid_t) -> uid_t? {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }
    return line?.split(separator: "\t").dropFirst().first.flatMap { uid_t($0) }
}

@Suite struct RotationHookTests {
    @Test func aPidFileHoldsOneDecimalProcessID() {
        #expect(RotationHookRunner.processID(in: Array("4242\n".utf8)) == 4242)
        #expect(RotationHookRunner.processID(in: Array("  17 ".utf8)) == 17)
        #expect(RotationHookRunner.processID(in: []) == nil)
        #expect(RotationHookRunner.processID(in: Array("0".utf8)) == nil)
        #expect(RotationHookRunner.processID(in: Array("-1".utf8)) == nil, "kill(-1) would signal every process")
        #expect(RotationHookRunner.processID(in: Array("12\n34".utf8)) == nil)
        #expect(RotationHookRunner.processID(in: Array("99999999999".utf8)) == nil)
        #expect(RotationHookRunner.processID(in: Array(String(getpid()).utf8)) == nil, "never the agent itself")
    }

    @Test func whatAPidFileHoldsOtherThanAProcessIDIsNeverShown() async throws {
        try await withScratchDirectory("pid-garbage") { directory in
            let path = directory + "/app.pid"
            try "TOPSECRET-db-password\n".write(toFile: path, atomically: true, encoding: .utf8)
            let read = RotationHookRunner.readPIDFile(path)
            #expect(read == .unusable("pid file \(path) does not hold a decimal process id (22 bytes, not shown); the application should write its pid alone"))
            try String(repeating: "7", count: 4096).write(toFile: path, atomically: true, encoding: .utf8)
            guard case let .unusable(long) = RotationHookRunner.readPIDFile(path) else {
                Issue.record("a 4 KiB pid file is not a process id")
                return
            }
            #expect(long.contains("(4096 bytes, not shown)") && !long.contains("7777"), "\(long)")
            try "".write(toFile: path, atomically: true, encoding: .utf8)
            #expect(RotationHookRunner.readPIDFile(path) == .unusable("pid file \(path) does not hold a decimal process id (it is empty); the application should write its pid alone"))
            try " 4242\n".write(toFile: path, atomically: true, encoding: .utf8)
            #expect(RotationHookRunner.readPIDFile(path) == .pid(4242, owner: geteuid()))
        }
    }

    @Test func aSymbolicLinkIsNotFollowedSoTheFileItNamesIsNeverRead() async throws {
        try await withScratchDirectory("pid-link") { directory in
            let secret = directory + "/sink", path = directory + "/app.pid"
            try "TOPSECRET-db-password".write(toFile: secret, atomically: true, encoding: .utf8)
            #expect(symlink(secret, path) == 0)
            guard case let .unusable(message) = RotationHookRunner.readPIDFile(path) else {
                Issue.record("a symbolic link is refused")
                return
            }
            #expect(message.hasPrefix("pid file \(path) is a symbolic link, which the agent does not follow"), "\(message)")
            #expect(!message.contains("TOPSECRET"))
            // Even one naming a file that holds a process id.
            try "4242".write(toFile: secret, atomically: true, encoding: .utf8)
            #expect(RotationHookRunner.readPIDFile(path) == .unusable(message))
        }
    }

    @Test func aFIFOIsRefusedWithoutWaitingForAWriter() async throws {
        try await withScratchDirectory("pid-fifo") { directory in
            let path = directory + "/app.pid"
            #expect(mkfifo(path, 0o600) == 0)
            let result = NIOLockedValueBox<RotationHookRunner.PIDFile?>(nil)
            let reading = Task {
                let read = try await BlockingExecutor.shared.run { RotationHookRunner.readPIDFile(path) }
                result.withLockedValue { $0 = read }
                return read
            }
            let deadline = ContinuousClock.now + .seconds(10)
            while result.withLockedValue({ $0 }) == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(result.withLockedValue { $0 } != nil, "reading a FIFO pid file returns at once")
            // A reader still blocked in open(2) would be let go by a writer's open.
            let writer = open(path, O_WRONLY | O_NONBLOCK)
            if writer >= 0 { close(writer) }
            #expect(try await reading.value == .unusable("pid file \(path) is a FIFO, not a regular file; have the application write its pid to a plain file"))
        }
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give the pid file to another uid"))
    func aPidFileOfAnotherUIDNamesOnlyThatUIDsProcesses() async throws {
        try await withScratchDirectory("pid-owner") { directory in
            let path = directory + "/app.pid"
            // SIGKILL: children of the test process start with its blocked signals blocked.
            func sleeper(_ arguments: [String]) throws -> Process {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: arguments[0])
                process.arguments = Array(arguments.dropFirst())
                try process.run()
                return process
            }
            let rootProcess = try sleeper(["/bin/sleep", "30"])
            // setpriv executes sleep in its own place: the id is sleep's.
            let nobodyProcess = try sleeper(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sleep", "30"])
            defer {
                for process in [rootProcess, nobodyProcess] where process.isRunning { kill(process.processIdentifier, SIGKILL) }
            }
            func pidFile(naming process: Process, owner: uid_t) throws {
                try "\(process.processIdentifier)\n".write(toFile: path, atomically: true, encoding: .utf8)
                #expect(chown(path, owner, owner) == 0)
            }

            // A pid file that uid 65534 wrote, naming a process of root: nothing is sent.
            try pidFile(naming: rootProcess, owner: 65534)
            let refused = RotationHookRunner.attempt(SIGKILL, name: "KILL", pidFile: path)
            #expect(refused == .retry(problem: "process \(rootProcess.processIdentifier) named by \(path) runs as uid 0 but the pid file belongs to uid 65534, so it is not signalled: a pid file owned by another uid than root or the agent's may name only its owner's processes; have the application write its pid file as the uid it runs as", refused: true))
            #expect(rootProcess.isRunning, "nothing was sent")

            // Naming a process of its own uid, it is signalled.
            let nobodyStarted = ContinuousClock.now
            while realUID(nobodyProcess.processIdentifier) != 65534, ContinuousClock.now < nobodyStarted + .seconds(10) {
                try await Task.sleep(for: .milliseconds(20))
            }
            try pidFile(naming: nobodyProcess, owner: 65534)
            #expect(RotationHookRunner.attempt(SIGKILL, name: "KILL", pidFile: path) == .sent(nobodyProcess.processIdentifier))
            nobodyProcess.waitUntilExit()
            #expect(nobodyProcess.terminationReason == .uncaughtSignal && nobodyProcess.terminationStatus == SIGKILL)

            // Root's own pid file may name any process.
            try pidFile(naming: rootProcess, owner: 0)
            #expect(RotationHookRunner.attempt(SIGKILL, name: "KILL", pidFile: path) == .sent(rootProcess.processIdentifier))
            rootProcess.waitUntilExit()
            #expect(rootProcess.terminationReason == .uncaughtSignal && rootProcess.terminationStatus == SIGKILL)
        }
    }
}
