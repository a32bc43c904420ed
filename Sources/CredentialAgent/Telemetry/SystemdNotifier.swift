import CloudAuth
import Foundation
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// Tells systemd how the agent stands when it runs as a `Type=notify` unit: `READY=1` on
/// `$NOTIFY_SOCKET` once every credential is servable, `WATCHDOG=1` every half `$WATCHDOG_USEC`
/// when the unit sets `WatchdogSec=`, and `STOPPING=1` when a graceful shutdown begins.
///
/// A lifecycle `Service` to run after the agent in the same group: shutdown reaches it first, so
/// `STOPPING=1` is sent before the agent stops serving.
public struct SystemdNotifier: Service {
    /// Where and how often to notify, read from the environment systemd gives the service.
    public struct Settings: Equatable, Sendable {
        /// The datagram socket's path; a leading `@` names an abstract socket.
        public var socketPath: String
        /// Half the watchdog timeout, or nil when no watchdog is set for this process.
        public var watchdogInterval: Duration?

        /// The settings for this process, or nil when `NOTIFY_SOCKET` is not set (not under
        /// systemd, or not `Type=notify`). `WATCHDOG_PID`, when set, must be `pid`.
        public init?(environment: [String: String], pid: Int32 = getpid()) {
            guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return nil }
            socketPath = path
            let watchdogPID = environment["WATCHDOG_PID"].flatMap { Int32($0) }
            if let micros = environment["WATCHDOG_USEC"].flatMap({ Int64($0) }), micros > 0,
               watchdogPID == nil || watchdogPID == pid {
                watchdogInterval = .microseconds(micros / 2)
            } else {
                watchdogInterval = nil
            }
        }
    }

    /// How often readiness is looked at until it is reached.
    public static let readinessPollInterval: Duration = .milliseconds(100)

    public let settings: Settings
    private let isReady: @Sendable () -> Bool
    private let logger: Logger

    /// Notifies for `store`: ready when every credential in it is servable at `now()`.
    public init(settings: Settings, store: CredentialStore, logger: Logger,
                now: @escaping @Sendable () -> Date = Date.init) {
        self.settings = settings
        self.logger = logger
        isReady = {
            let at = now()
            return store.snapshots().allSatisfy { $0.machine.servable(at: at) != nil }
        }
    }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.announceReadiness() }
            if let interval = settings.watchdogInterval {
                group.addTask { await self.feedWatchdog(every: interval) }
            }
            try? await gracefulShutdown()
            if !Task.isCancelled { notify("STOPPING=1") }
            group.cancelAll()
        }
    }

    private func announceReadiness() async {
        while !Task.isCancelled {
            if isReady() {
                notify("READY=1\nSTATUS=every credential is servable")
                return
            }
            try? await Task.sleep(for: Self.readinessPollInterval)
        }
    }

    private func feedWatchdog(every interval: Duration) async {
        while !Task.isCancelled {
            notify("WATCHDOG=1")
            try? await Task.sleep(for: interval)
        }
    }

    private func notify(_ message: String) {
        if let failure = Self.send(message, to: settings.socketPath) {
            logger.warning("cannot notify systemd", metadata: ["socket": "\(settings.socketPath)", "error": "\(failure)"])
        }
    }

    /// Sends `message` as one datagram to the Unix socket at `path`; returns why not when it failed.
    static func send(_ message: String, to path: String) -> String? {
        guard let address = UnixSocketAddress(path: path, abstractAt: true) else {
            return "the socket path is longer than \(UnixSocketAddress.maxPathBytes) bytes"
        }

        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return "socket: \(String(cString: strerror(errno)))" }
        defer { close(descriptor) }
        let bytes = Array(message.utf8)
        let sent = address.withSocketAddress { socketAddress, length in
            bytes.withUnsafeBytes { sendto(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length) }
        }
        return sent == bytes.count ? nil : "sendto: \(String(cString: strerror(errno)))"
    }
}
