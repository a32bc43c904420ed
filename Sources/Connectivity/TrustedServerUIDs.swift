import CloudAuth
#if canImport(Glibc)
import Glibc
#endif

/// The uids a local server, a credential's proxy, may run as: root, this process's own uid, and
/// the agent's uid when it runs as another (`--server-uid`, `CREDAGENT_SERVER_UID`), the same
/// rule the agent's clients apply to its socket. A check through a proxy believes only a server
/// run by one of them: anyone could otherwise listen in the proxy's place and answer "OK".
public struct TrustedServerUIDs: Sendable, Equatable {
    public var uids: Set<UInt32>

    public init(serverUID: UInt32? = nil) {
        uids = Set([0, getuid()] + (serverUID.map { [$0] } ?? []))
    }

    /// Nil when the peer of the connected socket `fd` (Unix or loopback TCP) runs as a trusted
    /// uid; otherwise the failure naming `address`, the uid found and the fix.
    func failure(connected fd: Int32, address: String) -> ProbeFailure? {
        let uid = SocketOwner.peerUID(ofConnected: fd)
        if let uid, uids.contains(uid) { return nil }
        let peer = UntrustedSocketPeer(address: address, serverUID: uid, trustedUIDs: uids)
        return ProbeFailure(.untrustedServer, peer.refusal, remedy: peer.remedy)
    }
}
