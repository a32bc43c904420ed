import CloudAuth
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The owner of the client end of a loopback TCP connection, from the kernel's socket diagnostics
/// (`NETLINK_SOCK_DIAG`): the TCP socket whose source is the client's address and port and whose
/// destination is the listener's is looked up by that exact 4-tuple, and its uid is the peer's.
/// The kernel reports no gid or pid for it.
enum LoopbackPeer {
    private static let netlinkSockDiag: Int32 = 4
    private static let sockDiagByFamily: UInt16 = 20
    private static let netlinkError: UInt16 = 2
    private static let netlinkRequest: UInt16 = 1
    /// Offset of `idiag_uid` in `struct inet_diag_msg`.
    private static let uidOffset = 64
    /// `sizeof(struct nlmsghdr)` and `sizeof(struct inet_diag_req_v2)`.
    private static let headerSize = 16
    private static let requestSize = 56

    /// The peer of the accepted TCP connection `channel` as the proxy's `allow` sees it (uid only;
    /// the gid never matches), or nil when the kernel has no such socket (the client already left).
    static func of(_ channel: any Channel) -> UnixPeerCredentials? {
        guard let client = channel.remoteAddress, let server = channel.localAddress,
              let uid = uid(client: client, server: server) else { return nil }
        var peer = UnixPeerCredentials()
        peer.uid = uid
        peer.gid = .max
        return peer
    }

    /// The uid owning the TCP socket connected from `client` to `server`.
    static func uid(client: SocketAddress, server: SocketAddress) -> UInt32? {
        guard let (family, clientPort, clientAddress) = endpoint(client),
              let (serverFamily, serverPort, serverAddress) = endpoint(server), family == serverFamily else { return nil }
        var message = [UInt8]()
        message.reserveCapacity(headerSize + requestSize)
        append(UInt32(headerSize + requestSize), to: &message)
        append(sockDiagByFamily, to: &message)
        append(netlinkRequest, to: &message)
        append(UInt32(1), to: &message)  // sequence
        append(UInt32(0), to: &message)  // port id: the kernel
        message += [family, UInt8(IPPROTO_TCP), 0, 0]
        append(UInt32.max, to: &message)  // every TCP state
        message += clientPort + serverPort + clientAddress + serverAddress
        append(UInt32(0), to: &message)  // any interface
        append(UInt32.max, to: &message)  // no cookie: match by addresses and ports
        append(UInt32.max, to: &message)

        let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), netlinkSockDiag)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var wait = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        guard send(fd, message, message.count, 0) == message.count else { return nil }
        var answer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &answer, answer.count, 0)
        guard count >= headerSize + uidOffset + 4,
              read(UInt16.self, answer, at: 4) == sockDiagByFamily else { return nil }
        return read(UInt32.self, answer, at: headerSize + uidOffset)
    }

    /// The family byte, the port (network order) and the address padded to 16 bytes, as
    /// `struct inet_diag_sockid` holds them.
    private static func endpoint(_ address: SocketAddress) -> (UInt8, [UInt8], [UInt8])? {
        // Linux's sockaddr_in: family, port, address at 4; sockaddr_in6: family, port, flow
        // info, address at 8. Ports and addresses are in network order, as the kernel wants them.
        switch address {
        case let .v4(ip):
            let raw = withUnsafeBytes(of: ip.address) { Array($0) }
            return (UInt8(AF_INET), Array(raw[2..<4]), Array(raw[4..<8]) + [UInt8](repeating: 0, count: 12))
        case let .v6(ip):
            let raw = withUnsafeBytes(of: ip.address) { Array($0) }
            return (UInt8(AF_INET6), Array(raw[2..<4]), Array(raw[8..<24]))
        case .unixDomainSocket:
            return nil
        }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value) { bytes += $0 }  // netlink's own fields are in host order
    }

    private static func read<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }
}
