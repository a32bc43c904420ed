import CloudAuth
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The owner of the client end of a loopback TCP connection that a proxy accepted: the TCP socket
/// whose source is the client's address and port and whose destination is the listener's, as
/// the kernel's socket diagnostics report it (``SocketOwner``).
enum LoopbackPeer {
    /// The peer of the accepted TCP connection `channel` as the proxy's `allow` sees it (uid only;
    /// the gid never matches), or nil when the kernel has no such socket (the client already left).
    static func of(_ channel: any Channel) -> UnixPeerCredentials? {
        guard let client = channel.remoteAddress.flatMap(storage), let server = channel.localAddress.flatMap(storage),
              let uid = SocketOwner.uid(ofTCPSocketFrom: client, to: server) else { return nil }
        var peer = UnixPeerCredentials()
        peer.uid = uid
        peer.gid = .max
        return peer
    }

    private static func storage(_ address: SocketAddress) -> sockaddr_storage? {
        var storage = sockaddr_storage()
        switch address {
        case let .v4(ip): withUnsafeMutableBytes(of: &storage) { target in withUnsafeBytes(of: ip.address) { target.copyMemory(from: $0) } }
        case let .v6(ip): withUnsafeMutableBytes(of: &storage) { target in withUnsafeBytes(of: ip.address) { target.copyMemory(from: $0) } }
        case .unixDomainSocket: return nil
        }
        return storage
    }
}
