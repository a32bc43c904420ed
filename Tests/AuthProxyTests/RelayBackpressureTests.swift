@testable import AuthProxy
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// Writes 64 KB chunks for as long as its channel is writable: a server that never stops talking.
private final class Firehose: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let written = NIOLockedValueBox(0)

    func channelActive(context: ChannelHandlerContext) { pump(context) }
    func channelWritabilityChanged(context: ChannelHandlerContext) { pump(context) }

    private func pump(_ context: ChannelHandlerContext) {
        let chunk = ByteBuffer(repeating: 0x78, count: 64 * 1024)
        while context.channel.isWritable {
            written.withLockedValue { $0 += chunk.readableBytes }
            context.write(wrapOutboundOut(chunk), promise: nil)
        }
        context.flush()
    }
}

@Suite("The byte relay")
struct RelayBackpressureTests {
    @Test("A client that never reads stops the relay reading from the server: what the relay holds stays bounded")
    func slowReaderSlowsWriter() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let firehose = Firehose()
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(firehose) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }

        // The relay's client side: a Unix socket pair, whose far end the test holds and never reads.
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[1]) }
        let relayed = NIOLockedValueBox(0)
        let eventLoop = group.next()
        let clientFD = fds[0]
        let serverAddress = try #require(server.localAddress)
        // The handlers live on the event loop both channels use.
        let (client, upstream) = try await eventLoop.flatSubmit {
            let (clientSide, serverSide) = RelayHandler.pair(clientToServer: { _ in },
                                                             serverToClient: { count in relayed.withLockedValue { $0 += count } })
            let boundClientSide = NIOLoopBound(clientSide, eventLoop: eventLoop)
            let boundServerSide = NIOLoopBound(serverSide, eventLoop: eventLoop)
            let client = ClientBootstrap(group: eventLoop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(boundClientSide.value) }
                }
                .withConnectedSocket(clientFD)
            let upstream = ClientBootstrap(group: eventLoop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(boundServerSide.value) }
                }
                .connect(to: serverAddress)
            return client.and(upstream)
        }.get()
        defer {
            client.close(promise: nil)
            upstream.close(promise: nil)
        }

        // Once the kernel buffers fill, the relay stops reading: the count stops growing.
        var previous = -1
        try await Task.sleep(for: .milliseconds(500))
        for _ in 0..<50 {
            let now = relayed.withLockedValue { $0 }
            if now == previous { break }
            previous = now
            try await Task.sleep(for: .milliseconds(200))
        }
        let held = relayed.withLockedValue { $0 }
        // Socket buffers (a few MB on loopback) plus the watermark; without backpressure the relay
        // would read all the firehose can send, gigabytes in this time.
        #expect(held == previous, "the relay kept reading from a server whose client does not read")
        #expect(held < 32 * 1024 * 1024)
        #expect(firehose.written.withLockedValue { $0 } < 64 * 1024 * 1024)
    }
}
