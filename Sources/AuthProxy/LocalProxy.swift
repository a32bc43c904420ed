import Logging
import NIOCore

/// What the agent needs of a local proxy, whatever its protocol: start it, close its listener
/// (on a reload that removes or changes it), stop it, and know whether sessions are still open.
public protocol LocalProxy: Sendable {
    /// Binds the socket or port; does nothing when already listening.
    func start() async throws
    /// Closes the listener and removes its socket file at once; open sessions carry on.
    func stopListening() async
    /// Closes the listener, gives open sessions up to `grace`, then closes those left.
    func stop(grace: Duration) async
    /// Client connections open now.
    var openConnections: Int { get }
}

/// How each protocol's proxy is a ``LocalProxy``: it owns a ``ProxyListener`` and says how an
/// accepted channel becomes one of its sessions; starting (the CA bundle loaded, the socket
/// bound), closing the listener, stopping and counting connections are the listener's, the same
/// for every protocol.
protocol ListeningProxy: LocalProxy, AnyObject {
    var listener: ProxyListener { get }
    /// Adds the protocol's handlers to an accepted channel (which does not read on its own); they
    /// deliver `refusal`, decided at accept, in the protocol's own words.
    func installSession(on channel: any Channel, refusal: ProxyRefusal?) throws
}

extension ListeningProxy {
    var metrics: ProxyMetrics { listener.metrics }
    var logger: Logger { listener.logger }

    /// Client connections open now (handshakes included).
    public var openConnections: Int { listener.openConnections }

    /// Loads the CA bundle and binds the socket or loopback TCP port; does nothing when already
    /// listening. Throws `UnixSocketFileError` or ``UpstreamTLSError`` (naming the CA file).
    public func start() async throws {
        try await listener.start { [weak self] channel, refusal in
            try self?.installSession(on: channel, refusal: refusal)
        }
    }

    /// Closes the listener and removes the socket file; open sessions carry on.
    public func stopListening() async {
        await listener.stopListening()
    }

    /// Stops accepting and removes the socket file, tells open sessions the proxy stops (a Vault
    /// session then closes once idle), gives them up to `grace`, then closes those left.
    public func stop(grace: Duration) async {
        await listener.stop(grace: grace)
    }
}
