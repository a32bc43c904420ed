import AuthProxy
import CloudAuth
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix

/// The credentials each name is served from; the agent replaces entries on reload.
public final class RefresherDirectory: Sendable {
    private let refreshers = NIOLockedValueBox([String: CredentialRefresher]())

    public init() {}

    public subscript(name: String) -> CredentialRefresher? {
        refreshers.withLockedValue { $0[name] }
    }

    public var all: [CredentialRefresher] { refreshers.withLockedValue { Array($0.values) } }

    func set(_ refresher: CredentialRefresher?, for name: String) {
        refreshers.withLockedValue { $0[name] = refresher }
    }
}

/// Who holds the socket's connections: peers that may read secrets, and the others (foreign
/// peers), whose share is bounded by ``ServerLimits/maxForeignConnections`` (less than
/// ``ServerLimits/maxConnections``), so that they can never take every place. Pure.
struct ConnectionTable {
    let maxConnections: Int
    let maxForeignConnections: Int
    private(set) var allowed = 0
    private(set) var foreign = 0

    init(limits: ServerLimits) {
        maxConnections = limits.maxConnections
        maxForeignConnections = limits.maxForeignConnections
    }

    /// Takes a place for a new connection, or returns false when there is none for its kind.
    mutating func admit(foreign isForeign: Bool) -> Bool {
        guard allowed + foreign < maxConnections else { return false }
        if isForeign {
            guard foreign < maxForeignConnections else { return false }
            foreign += 1
        } else {
            allowed += 1
        }
        return true
    }

    /// Frees the place of a connection admitted with the same `foreign`.
    mutating func release(foreign isForeign: Bool) {
        if isForeign { foreign -= 1 } else { allowed -= 1 }
    }
}

/// The socket API's HTTP/1.1 server on a Unix socket (SwiftNIO).
///
/// ``start()`` prepares the socket file (parent directory, stale socket), binds in a private
/// directory, sets the mode and moves the socket into place;
/// ``stop(grace:)`` stops accepting, lets each connection finish the request it is answering
/// (NIOExtras' `ServerQuiescingHelper`), closes the rest after `grace`, and removes the socket file.
public final class SocketServer: Sendable {
    public var path: String { socketFile.path }
    private let socketFile: UnixSocketFile
    private let shared: ServerContext
    private let group: any EventLoopGroup
    private struct Running {
        var channel: (any Channel)?
        var quiescing: ServerQuiescingHelper?
        var inode: UInt64 = 0
        var table: ConnectionTable
        var connections: [ObjectIdentifier: any Channel] = [:]
    }
    private let running: NIOLockedValueBox<Running>

    public init(socket: SocketConfig, context: ServerContext, group: any EventLoopGroup) {
        let sharedDirectory = socket.sharedDirectory
        self.socketFile = UnixSocketFile(path: socket.path, mode: socket.mode, setting: "socket.path") { directory in
            // With a shared directory, only the directories above it (StrictModes).
            do throws(UnsafePathError) {
                try StrictModes.check(sharedDirectory ? (directory as NSString).deletingLastPathComponent : directory)
            } catch {
                throw UnixSocketFileError(path: error.path,
                                          message: "\(error.problem), so another user could replace the agent's socket; \(error.remedy)")
            }
        }
        self.shared = context
        self.group = group
        self.running = NIOLockedValueBox(Running(table: ConnectionTable(limits: context.limits)))
    }

    /// Binds the socket; does nothing when already listening.
    public func start() async throws {
        if running.withLockedValue({ $0.channel != nil }) { return }
        let shared = self.shared
        let quiescing = ServerQuiescingHelper(group: group)
        let unsent = shared.limits.maxUnsentBytes
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: unsent / 2, high: unsent))
            .childChannelInitializer { [weak self] channel in
                guard let self else { return channel.close() }
                return UnixPeerCredentials.of(channel).flatMap { peer in
                    guard self.admit(channel, peer: peer) else { return channel.close() }
                    return channel.eventLoop.makeCompletedFuture {
                        try HTTPConnectionHandler.addHandlers(to: channel.pipeline.syncOperations, shared: shared, peer: peer)
                    }
                }
            }
        let (channel, inode) = try await socketFile.listen(
            bind: { try await bootstrap.bind(unixDomainSocketPath: $0, cleanupExistingSocketFile: false).get() },
            close: { try? await $0.close() })
        running.withLockedValue {
            $0.channel = channel
            $0.quiescing = quiescing
            $0.inode = inode
        }
    }

    /// Takes a place in the connection table for `channel`, freed when it closes; peers that may
    /// not read secrets (or whose credentials are unknown) take one of the foreign places.
    private func admit(_ channel: any Channel, peer: UnixPeerCredentials?) -> Bool {
        let foreign = !(peer.map { shared.policy.allows($0) } ?? false)
        let admitted = running.withLockedValue { running in
            guard running.channel != nil, running.table.admit(foreign: foreign) else { return false }
            running.connections[ObjectIdentifier(channel)] = channel
            return true
        }
        guard admitted else {
            shared.metrics.connectionRejected()
            return false
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.running.withLockedValue { running in
                running.table.release(foreign: foreign)
                running.connections.removeValue(forKey: ObjectIdentifier(channel))
            }
        }
        return true
    }

    /// Stops accepting, lets connections finish their current request for up to `grace`, then
    /// closes what is left and removes the socket file.
    public func stop(grace: Duration = .seconds(5)) async {
        let (listener, quiescing, inode) = running.withLockedValue { running in
            defer {
                running.channel = nil
                running.quiescing = nil
            }
            return (running.channel, running.quiescing, running.inode)
        }
        guard let listener, let quiescing else { return }
        let allClosed = listener.eventLoop.makePromise(of: Void.self)
        quiescing.initiateShutdown(promise: allClosed)
        try? await listener.closeFuture.get()
        socketFile.remove(inode: inode)
        let closeTheRest = listener.eventLoop.scheduleTask(in: TimeAmount(grace)) {
            for connection in self.running.withLockedValue({ Array($0.connections.values) }) {
                connection.close(promise: nil)
            }
        }
        try? await allClosed.futureResult.get()
        closeTheRest.cancel()
    }
}
