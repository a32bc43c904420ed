import CloudAuth
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Who may read secrets: the configured uids and gids, or, when neither is configured, the uid the
/// agent runs as.
public struct PeerPolicy: Sendable, Equatable {
    public var allowUIDs: Set<UInt32>
    public var allowGIDs: Set<UInt32>
    public var agentUID: UInt32

    public init(allowUIDs: [UInt32], allowGIDs: [UInt32], agentUID: UInt32 = getuid()) {
        self.allowUIDs = Set(allowUIDs)
        self.allowGIDs = Set(allowGIDs)
        self.agentUID = agentUID
    }

    /// Whether `peer` may read secrets.
    public func allows(_ peer: UnixPeerCredentials) -> Bool {
        if allowUIDs.isEmpty, allowGIDs.isEmpty { return peer.uid == agentUID }
        return allowUIDs.contains(peer.uid) || allowGIDs.contains(peer.gid)
    }
}
