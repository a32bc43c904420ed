import CloudAuth
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The owner of a loopback TCP socket as the kernel's socket diagnostics report it, on real
/// sockets: the process's own uid while the client's socket is open, and nothing once the client
/// closed it (the kernel reports a closed socket as root's, which must never be believed).
@Suite struct SocketOwnerTests {
    @Test func ownerOfAnOpenLoopbackSocketIsItsProcess() throws {
        let pair = try LoopbackPair()
        defer { pair.close() }
        #expect(SocketOwner.uid(ofTCPSocketFrom: pair.clientAddress, to: pair.serverAddress) == getuid())
        #expect(SocketOwner.peerUID(ofConnected: pair.accepted) == getuid())
    }

    @Test func closedClientSocketHasNoOwner() throws {
        let pair = try LoopbackPair()
        defer { pair.close() }
        Glibc.close(pair.client)
        pair.client = -1
        // Orphaned at once (FIN_WAIT1, its owner still known), then, once the peer's ACK came,
        // kept only to end the connection (FIN_WAIT2, TIME_WAIT) and reported as root's: from
        // then on there is no owner to believe.
        var owner = SocketOwner.uid(ofTCPSocketFrom: pair.clientAddress, to: pair.serverAddress)
        for _ in 0..<100 where owner != nil {
            #expect(owner == getuid())
            usleep(10_000)
            owner = SocketOwner.uid(ofTCPSocketFrom: pair.clientAddress, to: pair.serverAddress)
        }
        #expect(owner == nil, "a closed socket still has an owner after a second")
    }

    @Test func connectionNotYetAcceptedIsOwnedByTheListenersProcess() throws {
        let (listener, port) = try loopbackSocket(listening: 4)
        defer { Glibc.close(listener) }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(client) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        // The server's end waits in the listener's queue, not accepted: no file holds it yet.
        #expect(SocketOwner.peerUID(ofConnected: client) == getuid())
    }
}

/// A connected loopback TCP pair made with plain sockets: the client's socket and the one the
/// listener accepted, with both ends' addresses.
private final class LoopbackPair {
    var client: Int32 = -1
    let listener: Int32
    let accepted: Int32
    let clientAddress: sockaddr_storage
    let serverAddress: sockaddr_storage

    init() throws {
        let (listener, _) = try loopbackSocket(listening: 1)
        var server = try Self.name(of: listener, getsockname)
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try Self.check(withUnsafePointer(to: &server) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }, "connect")
        let accepted = accept(listener, nil, nil)
        try Self.check(accepted, "accept")
        (self.listener, self.client, self.accepted) = (listener, client, accepted)
        (serverAddress, clientAddress) = (server, try Self.name(of: client, getsockname))
    }

    func close() {
        if client >= 0 { Glibc.close(client) }
        Glibc.close(accepted)
        Glibc.close(listener)
    }

    private static func name(of fd: Int32, _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) throws -> sockaddr_storage {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try check(withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, &length) } }, "getsockname")
        return storage
    }

    private static func check(_ result: Int32, _ call: String) throws {
        guard result >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO, userInfo: ["call": call]) }
    }
}
