import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
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

/// The socket API's HTTP/1.1 server on a Unix socket (SwiftNIO).
///
/// ``start()`` prepares the socket file (parent directory, stale socket), binds in a private
/// directory, sets the mode and moves the socket into place;
/// ``stop(grace:)`` stops accepting, lets each connection finish the request it is answering,
/// closes the rest after `grace`, and removes the socket file.
public final class SocketServer: Sendable {
    public let path: String
    private let mode: UInt32
    private let shared: ServerContext
    private let group: any EventLoopGroup
    private struct Running {
        var channel: (any Channel)?
        var inode: UInt64 = 0
        var connections: [ObjectIdentifier: any Channel] = [:]
    }
    private let running = NIOLockedValueBox(Running())

    public init(socket: SocketConfig, context: ServerContext, group: any EventLoopGroup) {
        self.path = socket.path
        self.mode = socket.mode
        self.shared = context
        self.group = group
    }

    /// Binds the socket; does nothing when already listening.
    public func start() async throws {
        if running.withLockedValue({ $0.channel != nil }) { return }
        try SocketFile.prepare(path: path)
        let shared = self.shared
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { [weak self] channel in
                guard let self, self.admit(channel) else { return channel.close() }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let connection = HTTPConnectionHandler(shared: shared)
                    try sync.addHandler(IdleStateHandler(readTimeout: shared.limits.idleTimeout))
                    try sync.addHandler(RequestBytesMarker(connection: connection))
                    try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
                    try sync.addHandler(connection)
                }
            }
        let bound = try SocketFile.stagingPath(for: path) ?? path
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(unixDomainSocketPath: bound, cleanupExistingSocketFile: false).get()
        } catch {
            if bound != path { SocketFile.discardStaging(bound) }
            throw SocketFileError(path: path, message: "cannot listen: \(error)")
        }
        let inode: UInt64
        do {
            inode = try SocketFile.finish(bound: bound, path: path, mode: mode)
        } catch {
            try? await channel.close()
            throw error
        }
        running.withLockedValue {
            $0.channel = channel
            $0.inode = inode
        }
    }

    private func admit(_ channel: any Channel) -> Bool {
        let admitted = running.withLockedValue { running in
            guard running.channel != nil, running.connections.count < shared.limits.maxConnections else { return false }
            running.connections[ObjectIdentifier(channel)] = channel
            return true
        }
        guard admitted else {
            shared.metrics.connectionRejected()
            return false
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.running.withLockedValue { $0.connections.removeValue(forKey: ObjectIdentifier(channel)) }
        }
        return true
    }

    /// Stops accepting, lets connections finish their current request for up to `grace`, then
    /// closes what is left and removes the socket file.
    public func stop(grace: Duration = .seconds(5)) async {
        let (listener, inode) = running.withLockedValue { running in
            defer { running.channel = nil }
            return (running.channel, running.inode)
        }
        guard let listener else { return }
        try? await listener.close()
        SocketFile.remove(path: path, inode: inode)
        for connection in running.withLockedValue({ Array($0.connections.values) }) {
            connection.pipeline.fireUserInboundEventTriggered(ServerStopping())
        }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, !running.withLockedValue({ $0.connections.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for connection in running.withLockedValue({ Array($0.connections.values) }) {
            try? await connection.close()
        }
    }
}
