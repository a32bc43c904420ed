import CloudAuth
import Foundation

/// A point in time by which a blocking step must finish.
struct Deadline {
    let instant: ContinuousClock.Instant
    /// The limit as the user set it, for messages.
    let seconds: Double

    init(seconds: Double) {
        self.seconds = seconds
        self.instant = ContinuousClock.now.advanced(by: .seconds(seconds))
    }

    /// Milliseconds left, for poll(); 0 once passed.
    var remainingMilliseconds: Int32 {
        let left = ContinuousClock.now.duration(to: instant)
        return Int32(clamping: max(0, Int64((left / .milliseconds(1)).rounded(.down))))
    }
}

/// A connected, non-blocking TCP or Unix stream socket, closed when the object goes away. Waits are bounded by
/// poll() with a deadline, so no call can hang.
///
/// Every call blocks: use it only on a ``BlockingExecutor`` thread.
final class StreamSocket {
    let descriptor: Int32

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Resolves `host` and connects to the first address that accepts within the deadline.
    /// Failure messages do not repeat the host and port: the caller names the endpoint.
    static func connect(host: String, port: Int, deadline: Deadline) throws(ProbeFailure) -> StreamSocket {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var addresses: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &addresses)
        guard status == 0, let first = addresses else {
            let reason = status == EAI_SYSTEM ? String(cString: strerror(errno)) : String(cString: gai_strerror(status))
            throw ProbeFailure(.unreachable, "the host name does not resolve (\(reason))",
                               remedy: "check the host name and DNS")
        }
        defer { freeaddrinfo(addresses) }

        var lastFailure = ProbeFailure(.unreachable, "the host name has no address to connect to")
        var current: UnsafeMutablePointer<addrinfo>? = first
        while let address = current {
            current = address.pointee.ai_next
            do {
                return try connect(to: address.pointee, deadline: deadline)
            } catch {
                lastFailure = error
                if error.cause == .timeout { break }
            }
        }
        throw lastFailure
    }

    /// Connects to the Unix socket at `path` within the deadline.
    static func connect(unixPath path: String, deadline: Deadline) throws(ProbeFailure) -> StreamSocket {
        guard let address = UnixSocketAddress(path: path) else {
            throw ProbeFailure(.invalidInput, "the socket path is longer than a Unix socket path may be")
        }
        return try address.withSocketAddress { (pointer, length) throws(ProbeFailure) -> StreamSocket in
            var entry = addrinfo()
            entry.ai_family = AF_UNIX
            entry.ai_addrlen = length
            entry.ai_addr = UnsafeMutablePointer(mutating: pointer)
            return try connect(to: entry, deadline: deadline)
        }
    }

    private static func connect(to address: addrinfo, deadline: Deadline) throws(ProbeFailure) -> StreamSocket {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let descriptor = socket(address.ai_family, type, 0)
        guard descriptor >= 0 else {
            throw ProbeFailure(.failed, "socket() failed: \(String(cString: strerror(errno)))")
        }
        let socket = StreamSocket(descriptor: descriptor)
        if Glibc.connect(descriptor, address.ai_addr, address.ai_addrlen) != 0 {
            guard errno == EINPROGRESS else { throw socket.connectFailure(errno) }
            try socket.wait(for: Int16(POLLOUT), deadline: deadline, doing: "connecting")
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &error, &length)
            guard error == 0 else { throw socket.connectFailure(error) }
        }
        if address.ai_family != AF_UNIX {
            var noDelay: Int32 = 1
            setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        }
        return socket
    }

    private func connectFailure(_ code: Int32) -> ProbeFailure {
        let reason = String(cString: strerror(code))
        switch code {
        case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL, ECONNRESET:
            return ProbeFailure(.unreachable, "\(reason)",
                                remedy: "check the host and port, and that the server runs and listens there")
        case ETIMEDOUT:
            return ProbeFailure(.timeout, "\(reason)")
        case ENOENT:
            return ProbeFailure(.unreachable, "no socket at this path", remedy: "check the path, and that the process that should listen there runs")
        case EACCES, EPERM:
            return ProbeFailure(.notPermitted, "\(reason)", remedy: "the socket's or its directory's permissions do not admit this user")
        default:
            return ProbeFailure(.failed, "connect() failed: \(reason)")
        }
    }

    /// Waits until the socket is ready for `events` (POLLIN or POLLOUT) or throws `timeout`.
    func wait(for events: Int16, deadline: Deadline, doing activity: String) throws(ProbeFailure) {
        var entry = pollfd(fd: descriptor, events: events, revents: 0)
        while true {
            let ready = poll(&entry, 1, deadline.remainingMilliseconds)
            if ready > 0 { return }
            if ready < 0, errno == EINTR { continue }
            if ready < 0 {
                throw ProbeFailure(.failed, "poll() failed while \(activity): \(String(cString: strerror(errno)))")
            }
            throw ProbeFailure(.timeout, "no progress within \(Self.format(deadline.seconds)) s while \(activity)",
                               remedy: "check that the port serves the expected protocol and that no firewall drops packets")
        }
    }

    /// Reads what is available (waiting for something first); 0 means the peer closed.
    func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline) throws(ProbeFailure) -> Int {
        try read(into: buffer, deadline: deadline, activity: "waiting for an answer")
    }

    /// ``read(into:deadline:)``, naming what the wait was for in a timeout's message.
    func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline, activity: String) throws(ProbeFailure) -> Int {
        while true {
            let count = recv(descriptor, buffer.baseAddress, buffer.count, 0)
            if count >= 0 { return count }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: try wait(for: Int16(POLLIN), deadline: deadline, doing: activity)
            default: throw ioFailure(activity, errno)
            }
        }
    }

    /// Writes all of `bytes`.
    func write(_ bytes: UnsafeRawBufferPointer, deadline: Deadline) throws(ProbeFailure) {
        var offset = 0
        while offset < bytes.count {
            let count = send(descriptor, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if count >= 0 { offset += count; continue }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: try wait(for: Int16(POLLOUT), deadline: deadline, doing: "sending")
            default: throw ioFailure("sending", errno)
            }
        }
    }

    func ioFailure(_ activity: String, _ code: Int32) -> ProbeFailure {
        let reason = String(cString: strerror(code))
        if code == ECONNRESET || code == EPIPE {
            return ProbeFailure(.closed, "the server closed the connection while \(activity) (\(reason))",
                                remedy: Self.closedRemedy)
        }
        return ProbeFailure(.failed, "\(activity) failed: \(reason)")
    }

    /// What to check when a server hangs up without an answer: the usual reason is a TLS port
    /// spoken to in plain text.
    static let closedRemedy = "if the port serves TLS, turn tls on; otherwise check the server's log"

    static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(format: "%.1f", seconds)
    }
}
