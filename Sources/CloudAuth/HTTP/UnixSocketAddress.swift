#if canImport(Glibc)
import Glibc
#endif

/// The address of a Unix socket (`sockaddr_un`) for a path, with the length that `connect`,
/// `bind` and `sendto` take: the one place a path becomes a socket address.
public struct UnixSocketAddress {
    private var address = sockaddr_un()
    /// The address's length: up to and including the path's terminating zero, or, for an
    /// abstract socket, up to its name's last byte.
    public let length: socklen_t

    /// `SOCK_STREAM | SOCK_CLOEXEC` (Linux) for `socket(AF_UNIX, ...)`, spelt out: which module
    /// owns glibc's declarations depends on the order clang builds its modules in, and they are not
    /// always visible.
    public static let streamSocketType: Int32 = 1 | 0o2000000

    /// The most bytes a path may have.
    public static let maxPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// The address of the socket at `path`; nil when the path is longer than ``maxPathBytes``.
    /// With `abstractAt`, a leading `@` names a socket in the abstract namespace (as systemd's
    /// `NOTIFY_SOCKET` may); otherwise it is part of a file name like any other byte.
    public init?(path: String, abstractAt: Bool = false) {
        var name = Array(path.utf8)
        let abstract = abstractAt && name.first == UInt8(ascii: "@")
        if abstract { name[0] = 0 }
        guard name.count <= Self.maxPathBytes else { return nil }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: name) }
        length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + name.count + (abstract ? 0 : 1))
    }

    /// Runs `body` with the address as the `sockaddr` the socket calls take, and its length.
    public func withSocketAddress<Result, Failure: Error>(
        _ body: (UnsafePointer<sockaddr>, socklen_t) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        var address = address
        return try withUnsafePointer(to: &address) { (pointer) throws(Failure) -> Result in
            try body(UnsafeRawPointer(pointer).assumingMemoryBound(to: sockaddr.self), length)
        }
    }
}
