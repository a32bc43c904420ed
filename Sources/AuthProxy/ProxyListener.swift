import CloudAuth
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The settings every proxy has, whatever its protocol; valid by construction (the agent's config
/// parser checks them). What the handshake timeout spans is the protocol's (see its
/// configuration).
public struct ProxySettings: Sendable, Equatable {
    /// The credential's name: it labels metrics and is named in every refusal.
    public var credential: String
    /// A Unix socket (a directory for PostgreSQL, else the socket file) or a loopback TCP address.
    public var listener: ProxyListenAddress
    /// Permission bits of the socket file (Unix sockets only).
    public var mode: UInt32
    /// Client connections open at once; more are refused in the protocol's own words.
    public var maxConnections: Int
    /// How long a client's connection may take to be set up.
    public var handshakeTimeout: Duration
    /// TCP connect to the server.
    public var connectTimeout: Duration

    public init(credential: String, listener: ProxyListenAddress, mode: UInt32 = 0o660, maxConnections: Int = 256,
                handshakeTimeout: Duration = .seconds(10), connectTimeout: Duration = .seconds(5)) {
        self.credential = credential
        self.listener = listener
        self.mode = mode
        self.maxConnections = maxConnections
        self.handshakeTimeout = handshakeTimeout
        self.connectTimeout = connectTimeout
    }
}

/// What a protocol's configuration gives its listener.
protocol ProxyListenerSettings: Sendable {
    /// The socket file's name when the address is a directory.
    static var socketName: String { get }
    var common: ProxySettings { get }
    /// The server the sessions connect to; its TLS context is loaded when listening starts.
    var upstreamServer: ProxyUpstream { get }
}

/// A refused connection closed without an answer: as many refused connections as the proxy
/// allows sessions already wait for theirs.
struct RefusedUnanswered: Error {}

/// Told to every open connection when its proxy stops: a session that can end cleanly between two
/// requests (Vault's) closes once no request is in progress; the others ignore it.
struct ProxyStopping: Sendable {}

/// The protocol-independent part of a proxy: a Unix socket or loopback TCP listener that decides
/// at accept whether a peer is allowed and counts allowed connections against `max_connections`,
/// tracks open connections, and stops gracefully (listener first, then up to `grace` for open
/// sessions). It loads the upstream TLS context (the CA bundle) each time it starts listening,
/// for the sessions' connections.
///
/// A refused connection (a peer not allowed, or one over `max_connections`) is answered by the
/// protocol's handler in the protocol's own words, but it holds no session slot: it is closed at
/// the latest after `handshake_timeout`, and at most `max_connections` refused connections wait
/// for their answer at once; beyond that one is closed unanswered. So processes that may not use
/// the proxy can neither take an allowed client's place nor hold descriptors without bound.
final class ProxyListener: Sendable {
    let credential: String
    let address: ProxyListenAddress
    /// The socket file of a Unix listener; nil for TCP.
    let socketPath: String?
    let mode: UInt32
    let maxConnections: Int
    let handshakeTimeout: Duration
    let allows: @Sendable (UnixPeerCredentials) -> Bool
    let metrics: ProxyMetrics
    let logger: Logger
    private let upstream: ProxyUpstream
    private let group: any EventLoopGroup

    private struct Running {
        var listener: (any Channel)?
        var inode: UInt64 = 0
        var upstreamTLS: UpstreamTLSContext?
        var connections: [ObjectIdentifier: any Channel] = [:]
        /// Refused connections waiting for their answer.
        var refusing = 0
        /// Who waits in ``stop(grace:)`` for the last connection to close.
        var drainWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }
    private let running = NIOLockedValueBox(Running())

    init<Settings: ProxyListenerSettings>(settings: Settings, allows: @escaping @Sendable (UnixPeerCredentials) -> Bool,
                                          metrics: ProxyMetrics, logger: Logger, group: any EventLoopGroup) {
        credential = settings.common.credential
        address = settings.common.listener
        socketPath = address.socketPath(inDirectoryNamed: Settings.socketName)
        mode = settings.common.mode
        maxConnections = settings.common.maxConnections
        handshakeTimeout = settings.common.handshakeTimeout
        upstream = settings.upstreamServer
        self.allows = allows
        self.metrics = metrics
        self.logger = logger
        self.group = group
    }

    var openConnections: Int { running.withLockedValue { $0.connections.count } }
    var isListening: Bool { running.withLockedValue { $0.listener != nil } }
    /// The upstream TLS context loaded by ``start(install:)``; nil when the connection is plain.
    var upstreamTLS: UpstreamTLSContext? { running.withLockedValue { $0.upstreamTLS } }

    /// Loads the upstream CA bundle, prepares the socket file and binds it (or binds the loopback
    /// TCP port); `install` adds the protocol's handler to each accepted channel (which does not
    /// read on its own), with the refusal decided at accept. Does nothing when already listening.
    /// Throws `UnixSocketFileError` naming the address, or ``UpstreamTLSError`` naming the CA file.
    func start(install: @escaping @Sendable (any Channel, ProxyRefusal?) throws -> Void) async throws {
        if isListening { return }
        let tls = try upstream.tlsContext()
        running.withLockedValue { $0.upstreamTLS = tls }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { [weak self] channel in
                guard let self else { return channel.close() }
                return self.peer(of: channel).flatMapThrowing { peer in
                    try install(channel, try self.admit(channel, peer: peer))
                }
            }
        let listener: any Channel
        var inode: UInt64 = 0
        if let socketFile {
            (listener, inode) = try await socketFile.listen(
                bind: { try await bootstrap.bind(unixDomainSocketPath: $0, cleanupExistingSocketFile: false).get() },
                close: { try? await $0.close() })
        } else {
            guard case let .loopbackTCP(host, port) = address else { return }
            do {
                listener = try await bootstrap.serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .bind(host: host, port: port).get()
            } catch {
                throw UnixSocketFileError(path: address.description, message: "cannot listen: \(error)")
            }
        }
        running.withLockedValue {
            $0.listener = listener
            $0.inode = inode
        }
    }

    /// The socket file at ``socketPath``; nil for a TCP listener.
    private var socketFile: UnixSocketFile? {
        socketPath.map { UnixSocketFile(path: $0, mode: mode, setting: "proxy.listen") }
    }

    /// The connecting process: `SO_PEERCRED` on a Unix socket, the kernel's socket diagnostics on
    /// loopback TCP (uid only).
    private func peer(of channel: any Channel) -> EventLoopFuture<UnixPeerCredentials?> {
        switch address {
        case .unixDirectory, .unixSocket: UnixPeerCredentials.of(channel)
        case .loopbackTCP: channel.eventLoop.makeSucceededFuture(LoopbackPeer.of(channel))
        }
    }

    private func admit(_ channel: any Channel, peer: UnixPeerCredentials?) throws -> ProxyRefusal? {
        guard let peer, allows(peer) else {
            return try refuse(channel, .peerNotAllowed(credential: credential, uid: peer?.uid))
        }
        let admitted = running.withLockedValue { running in
            guard running.listener != nil, running.connections.count < maxConnections else { return false }
            running.connections[ObjectIdentifier(channel)] = channel
            return true
        }
        guard admitted else { return try refuse(channel, .tooManyConnections(credential: credential, limit: maxConnections)) }
        metrics.connectionOpened()
        channel.closeFuture.whenComplete { [weak self] _ in
            guard let self else { return }
            self.metrics.connectionClosed()
            let drained = self.running.withLockedValue { running -> [CheckedContinuation<Void, Never>] in
                running.connections.removeValue(forKey: ObjectIdentifier(channel))
                guard running.connections.isEmpty else { return [] }
                defer { running.drainWaiters = [:] }
                return Array(running.drainWaiters.values)
            }
            for waiter in drained { waiter.resume() }
        }
        return nil
    }

    /// `refusal` for the protocol's handler to deliver, the connection closed after the handshake
    /// timeout if it has not closed by then; throws ``RefusedUnanswered`` (the channel is then
    /// closed) when the most refused connections already wait.
    private func refuse(_ channel: any Channel, _ refusal: ProxyRefusal) throws -> ProxyRefusal {
        let waits = running.withLockedValue { running in
            guard running.refusing < maxConnections else { return false }
            running.refusing += 1
            return true
        }
        guard waits else {
            metrics.rejected(refusal)
            throw RefusedUnanswered()
        }
        let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(handshakeTimeout)) { channel.close(promise: nil) }
        channel.closeFuture.whenComplete { [weak self] _ in
            deadline.cancel()
            self?.running.withLockedValue { $0.refusing -= 1 }
        }
        return refusal
    }

    /// Stops accepting and removes the socket file at once; open sessions carry on.
    func stopListening() async {
        let (listener, inode) = running.withLockedValue { running in
            defer { running.listener = nil }
            return (running.listener, running.inode)
        }
        guard let listener else { return }
        try? await listener.close()
        socketFile?.remove(inode: inode)
    }

    /// Stops accepting and removes the socket file, tells open sessions ``ProxyStopping``, lets
    /// them run for up to `grace`, then closes those left.
    func stop(grace: Duration) async {
        await stopListening()
        for connection in running.withLockedValue({ Array($0.connections.values) }) {
            connection.pipeline.fireUserInboundEventTriggered(ProxyStopping())
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.allConnectionsClosed() }
            group.addTask { try? await Task.sleep(for: grace) }
            await group.next()
            group.cancelAll()
        }
        for connection in running.withLockedValue({ Array($0.connections.values) }) {
            try? await connection.close()
        }
    }

    /// Returns once no connection is open, or when the task is cancelled.
    private func allConnectionsClosed() async {
        let id = running.withLockedValue { running in
            defer { running.nextWaiter += 1 }
            return running.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let waitsForClose = running.withLockedValue { running in
                    guard !running.connections.isEmpty, !Task.isCancelled else { return false }
                    running.drainWaiters[id] = waiter
                    return true
                }
                if !waitsForClose { waiter.resume() }
            }
        } onCancel: {
            running.withLockedValue { $0.drainWaiters.removeValue(forKey: id) }?.resume()
        }
    }
}
