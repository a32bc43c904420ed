import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The process at the other end of a proxy connection.
public struct ProxyPeer: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// The peer of a Unix socket connection, from `SO_PEERCRED`; nil when the kernel does not say.
    static func of(_ channel: any Channel) -> EventLoopFuture<ProxyPeer?> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let future: EventLoopFuture<PeerCredentialLayout> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return future.map { ProxyPeer(pid: $0.pid, uid: $0.uid, gid: $0.gid) }.recover { _ in nil }
    }
}

/// Laid out exactly as Linux's `struct ucred { pid_t pid; uid_t uid; gid_t gid; }`, which Glibc
/// declares only under `_GNU_SOURCE` (Swift's Glibc module does not define it).
struct PeerCredentialLayout {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
