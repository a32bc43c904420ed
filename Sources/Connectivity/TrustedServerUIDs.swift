import CloudAuth

/// The uids a local server, a credential's proxy, may run as: root, this process's own uid, and
/// the agent's uid when it runs as another (`--server-uid`, `CREDAGENT_SERVER_UID`), the same
/// rule the agent's clients apply to its socket. A check through a proxy believes only a server
/// run by one of them: anyone could otherwise listen in the proxy's place and answer "OK".
public struct TrustedServerUIDs: Sendable, Equatable {
    public var uids: Set<UInt32>

    public init(serverUID: UInt32? = nil) {
        uids = UntrustedSocketPeer.trustedUIDs(serverUID: serverUID)
    }

    /// Nil when the peer of the connected socket `fd` (Unix or loopback TCP) runs as a trusted
    /// uid; otherwise the failure naming `address`, the uid found and the fix.
    func failure(connected fd: Int32, address: String) -> ProbeFailure? {
        UntrustedSocketPeer.check(connected: fd, address: address, trustedUIDs: uids)
            .map { ProbeFailure(.untrustedServer, $0.refusal, remedy: $0.remedy) }
    }
}
