import CredentialAgent
import Testing

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
}
