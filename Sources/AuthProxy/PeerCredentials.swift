import CloudAuth
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

extension UnixPeerCredentials {
    /// The peer of a Unix socket connection (a proxy's, the agent's socket API's), from
    /// `SO_PEERCRED`; nil when the kernel does not say.
    public static func of(_ channel: any Channel) -> EventLoopFuture<UnixPeerCredentials?> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let future: EventLoopFuture<UnixPeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return future.map { Optional($0) }.recover { _ in nil }
    }
}
