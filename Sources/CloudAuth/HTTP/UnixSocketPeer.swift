import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process at the other end of a Unix socket connection, as `SO_PEERCRED` reports it. Laid
/// out exactly as Linux's `struct ucred { pid_t pid; uid_t uid; gid_t gid; }`: Glibc declares
/// `ucred` only under `_GNU_SOURCE`, which Swift's Glibc module does not define.
public struct UnixPeerCredentials: Sendable, Equatable {
    public var pid: Int32 = 0
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0

    public init() {}

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// The peer of the connected Unix socket `fd`, or nil when the kernel does not say.
    public static func of(socket fd: Int32) -> UnixPeerCredentials? {
        var credentials = UnixPeerCredentials()
        var length = socklen_t(MemoryLayout<UnixPeerCredentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0,
              length == socklen_t(MemoryLayout<UnixPeerCredentials>.size) else { return nil }
        return credentials
    }
}

/// A local socket (Unix, or loopback TCP) served by a process whose uid the client does not
/// trust: another user's socket put in the agent's or a proxy's place. Nothing was sent to it.
public struct UntrustedSocketPeer: Error, Sendable, Equatable, CustomStringConvertible {
    /// The socket path or loopback address connected to.
    public var address: String
    /// The uid of the process serving it; nil when the kernel did not say.
    public var serverUID: UInt32?
    /// The uids the client accepts.
    public var trustedUIDs: Set<UInt32>

    /// The uids a client trusts to serve a local socket: root, its own, and `serverUID` (the
    /// agent's, when it runs as another).
    public static func trustedUIDs(serverUID: UInt32?) -> Set<UInt32> {
        Set([0, getuid()] + (serverUID.map { [$0] } ?? []))
    }

    /// Nil when the peer of the connected socket `fd` (Unix or loopback TCP, ``SocketOwner``)
    /// runs as one of `trustedUIDs`; otherwise why it is refused, naming `address`.
    public static func check(connected fd: Int32?, address: String, trustedUIDs: Set<UInt32>) -> UntrustedSocketPeer? {
        let uid = fd.flatMap { SocketOwner.peerUID(ofConnected: $0) }
        if let uid, trustedUIDs.contains(uid) { return nil }
        return UntrustedSocketPeer(address: address, serverUID: uid, trustedUIDs: trustedUIDs)
    }

    public init(address: String, serverUID: UInt32?, trustedUIDs: Set<UInt32>) {
        self.address = address
        self.serverUID = serverUID
        self.trustedUIDs = trustedUIDs
    }

    /// What was found and refused.
    public var refusal: String {
        let server = serverUID.map { "uid \($0)" } ?? "a process whose uid cannot be read"
        let trusted = trustedUIDs.sorted().map(String.init).joined(separator: ", ")
        return "\(address) is served by \(server), not by a trusted uid (\(trusted)); refusing to talk to it"
    }

    /// What to do when the server is the right one after all.
    public var remedy: String { "if the agent runs as that uid, say so with --server-uid or CREDAGENT_SERVER_UID" }

    public var description: String { "\(refusal) (\(remedy))" }
}
