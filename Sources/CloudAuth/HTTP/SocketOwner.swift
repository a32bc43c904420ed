import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Who runs the process at the other end of a connected local socket: `SO_PEERCRED` for a Unix
/// socket, the kernel's socket diagnostics (`NETLINK_SOCK_DIAG`) for loopback TCP. A client uses
/// it to check that a local server is the one it trusts before it believes an answer; a server
/// uses it to apply its `allow` list.
public enum SocketOwner {
    /// The uid of the peer of the connected socket `fd` (Unix or TCP), or nil when the kernel
    /// does not say (the peer already left, or the socket is of another family).
    public static func peerUID(ofConnected fd: Int32) -> UInt32? {
        var local = sockaddr_storage(), peer = sockaddr_storage()
        guard name(of: fd, into: &local, getsockname), name(of: fd, into: &peer, getpeername) else { return nil }
        if Int32(local.ss_family) == AF_UNIX { return UnixPeerCredentials.of(socket: fd)?.uid }
        return uid(ofTCPSocketFrom: peer, to: local)
    }

    /// The uid owning the TCP socket whose own address is `source` and whose peer is
    /// `destination` (both `sockaddr_in` or both `sockaddr_in6`), looked up by that exact 4-tuple.
    /// The kernel reports no gid or pid for it. Nil for a socket its process has closed and the
    /// kernel keeps only to end the connection (FIN_WAIT2 or TIME_WAIT, with no inode): it is
    /// reported with uid 0, root's, whoever owned it. (A connection still waiting in a
    /// listener's queue has no inode either, but its owner is the listener's, reported rightly.)
    public static func uid(ofTCPSocketFrom source: sockaddr_storage, to destination: sockaddr_storage) -> UInt32? {
        guard let (family, sourcePort, sourceAddress) = endpoint(source),
              let (destinationFamily, destinationPort, destinationAddress) = endpoint(destination),
              family == destinationFamily else { return nil }
        var message = [UInt8]()
        message.reserveCapacity(headerSize + requestSize)
        append(UInt32(headerSize + requestSize), to: &message)
        append(sockDiagByFamily, to: &message)
        append(netlinkRequest, to: &message)
        append(UInt32(1), to: &message)  // sequence
        append(UInt32(0), to: &message)  // port id: the kernel
        message += [family, UInt8(IPPROTO_TCP), 0, 0]
        append(UInt32.max, to: &message)  // every TCP state
        message += sourcePort + destinationPort + sourceAddress + destinationAddress
        append(UInt32(0), to: &message)  // any interface
        append(UInt32.max, to: &message)  // no cookie: match by addresses and ports
        append(UInt32.max, to: &message)

        let fd = socket(AF_NETLINK, datagramSocketType | closeOnExec, netlinkSockDiag)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var wait = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        guard send(fd, message, message.count, 0) == message.count else { return nil }
        var answer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &answer, answer.count, 0)
        guard count >= headerSize + inodeOffset + 4, read(UInt16.self, answer, at: 4) == sockDiagByFamily else { return nil }
        let state = answer[headerSize + stateOffset]
        if read(UInt32.self, answer, at: headerSize + inodeOffset) == 0, state == finWait2 || state == timeWait { return nil }
        return read(UInt32.self, answer, at: headerSize + uidOffset)
    }

    private static let netlinkSockDiag: Int32 = 4
    /// `SOCK_DGRAM` and `SOCK_CLOEXEC` (Linux), spelt out as ``UnixSocketFile`` spells
    /// `SOCK_STREAM`: which module owns those glibc declarations depends on build order.
    private static let datagramSocketType: Int32 = 2
    private static let closeOnExec: Int32 = 0o2000000
    private static let sockDiagByFamily: UInt16 = 20
    private static let netlinkRequest: UInt16 = 1
    /// Offsets of `idiag_state`, `idiag_uid` and `idiag_inode` in `struct inet_diag_msg`.
    private static let stateOffset = 1
    private static let uidOffset = 64
    private static let inodeOffset = 68
    /// `TCP_FIN_WAIT2` and `TCP_TIME_WAIT`.
    private static let finWait2: UInt8 = 5
    private static let timeWait: UInt8 = 6
    /// `sizeof(struct nlmsghdr)` and `sizeof(struct inet_diag_req_v2)`.
    private static let headerSize = 16
    private static let requestSize = 56

    private static func name(of fd: Int32, into address: inout sockaddr_storage,
                             _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) -> Bool {
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, &length) == 0 }
        }
    }

    /// The family byte, the port (network order) and the address padded to 16 bytes, as
    /// `struct inet_diag_sockid` holds them.
    private static func endpoint(_ address: sockaddr_storage) -> (UInt8, [UInt8], [UInt8])? {
        // Linux's sockaddr_in: family, port, address at 4; sockaddr_in6: family, port, flow
        // info, address at 8. Ports and addresses are in network order, as the kernel wants them.
        let raw = withUnsafeBytes(of: address) { Array($0) }
        switch Int32(address.ss_family) {
        case AF_INET: return (UInt8(AF_INET), Array(raw[2..<4]), Array(raw[4..<8]) + [UInt8](repeating: 0, count: 12))
        case AF_INET6: return (UInt8(AF_INET6), Array(raw[2..<4]), Array(raw[8..<24]))
        default: return nil
        }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value) { bytes += $0 }  // netlink's own fields are in host order
    }

    private static func read<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }
}
