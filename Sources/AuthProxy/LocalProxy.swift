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
