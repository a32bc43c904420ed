import Foundation
import Testing
@testable import CredentialAgent
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SystemdNotifierTests {
    @Test func withoutANotifySocketThereIsNothingToNotify() {
        #expect(SystemdNotifier.Settings(environment: [:], pid: 42) == nil)
        #expect(SystemdNotifier.Settings(environment: ["NOTIFY_SOCKET": ""], pid: 42) == nil)
    }

    @Test func theWatchdogIsFedAtHalfItsTimeoutWhenItIsThisProcesssWatchdog() {
        let socket = ["NOTIFY_SOCKET": "@/org/freedesktop/systemd1/notify"]
        #expect(SystemdNotifier.Settings(environment: socket, pid: 42)?.watchdogInterval == nil)
        let watchdog = socket.merging(["WATCHDOG_USEC": "30000000"]) { $1 }
        #expect(SystemdNotifier.Settings(environment: watchdog, pid: 42)?.watchdogInterval == .seconds(15))
        #expect(SystemdNotifier.Settings(environment: watchdog.merging(["WATCHDOG_PID": "42"]) { $1 }, pid: 42)?
            .watchdogInterval == .seconds(15))
        // Another process's watchdog (a parent that did not unset the variables), or nonsense: none.
        #expect(SystemdNotifier.Settings(environment: watchdog.merging(["WATCHDOG_PID": "41"]) { $1 }, pid: 42)?
            .watchdogInterval == nil)
        #expect(SystemdNotifier.Settings(environment: socket.merging(["WATCHDOG_USEC": "soon"]) { $1 }, pid: 42)?
            .watchdogInterval == nil)
        #expect(SystemdNotifier.Settings(environment: watchdog, pid: 42)?.socketPath == "@/org/freedesktop/systemd1/notify")
    }

    /// systemd in a container may name an abstract socket (`@...`): the name after the `@` is the
    /// address, without a terminating zero.
    @Test func aMessageReachesAnAbstractSocket() throws {
        let name = "credagent-notify-test-\(UUID().uuidString.prefix(8))"
        let receiver = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(receiver >= 0)
        defer { close(receiver) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = [UInt8(0)] + Array(name.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(receiver, $0, length) }
        }
        try #require(bound == 0)

        #expect(SystemdNotifier.send("READY=1", to: "@" + name) == nil)
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { recv(receiver, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        #expect(count > 0 && String(decoding: buffer[0..<count], as: UTF8.self) == "READY=1")

        #expect(SystemdNotifier.send("READY=1", to: "@no-such-\(name)")?.hasPrefix("sendto: ") == true)
        #expect(SystemdNotifier.send("READY=1", to: "/" + String(repeating: "x", count: 200))?.contains("longer than") == true)
    }
}
