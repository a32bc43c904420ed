import CloudAuth
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import CredentialAgent

/// One connection's pipeline as the server builds it, in process (the idle timeout never passes).
private struct Connection {
    let channel = EmbeddedChannel()
    let store = CredentialStore()
    let shared: ServerContext
    private let owner = ObjectIdentifier(NSObject())

    init(peerUID: UInt32 = 1000, allowUIDs: [UInt32] = [1000]) throws {
        shared = ServerContext(store: store, refreshers: RefresherDirectory(), metrics: AgentMetrics(),
                               policy: PeerPolicy(allowUIDs: allowUIDs, allowGIDs: []), limits: ServerLimits(),
                               logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                               now: { Date(timeIntervalSince1970: 1_800_000_010) })
        try HTTPConnectionHandler.addHandlers(to: channel.pipeline.syncOperations, shared: shared,
                                              peer: UnixPeerCredentials(pid: 42, uid: peerUID, gid: peerUID))
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/agent.sock")).wait()
    }

    func publish(_ name: String = "orders-db", versions: Int) {
        if store.snapshot(name) == nil { store.register(descriptor(name), machine(versions: 1), owner: owner) }
        store.publish(descriptor(name), machine(versions: versions), owner: owner)
    }

    func send(_ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
        channel.pipeline.fireChannelReadComplete()
        channel.embeddedEventLoop.run()
    }

    /// Every response written so far, as text.
    func responses() throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    func setWritable(_ writable: Bool) {
        channel.isWritable = writable
        channel.pipeline.fireChannelWritabilityChanged()
        channel.embeddedEventLoop.run()
    }
}

private func get(_ path: String, close: Bool = false) -> String {
    "GET \(path) HTTP/1.1\r\nhost: x\r\n" + (close ? "connection: close\r\n" : "") + "\r\n"
}

@Suite struct HTTPConnectionHandlerTests {
    @Test func aServedCredentialIsItsPrebuiltResponse() throws {
        let connection = try Connection()
        connection.publish(versions: 2)
        try connection.send(get("/v1/credentials/orders-db"))
        let response = try #require(try connection.channel.readOutbound(as: ByteBuffer.self))
        #expect(response == connection.store.snapshot("orders-db")?.keepAliveResponse)
        #expect(connection.channel.isActive)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let connection = try Connection()
        try connection.send(get("/v1/health") + get("/v1/credentials/unknown") + get("/v1/health", close: true))
        let text = try connection.responses()
        let statuses = text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
        #expect(statuses == ["200", "404", "200"])
        #expect(text.hasSuffix(#"connection: close"# + "\r\n\r\n" + #"{"status":"ok"}"#))
        #expect(!connection.channel.isActive)
    }

    /// The decoder reads heads of the usual shape itself and hands the first other one, and all
    /// after it, to NIO's decoder: the answers are the same, in order.
    @Test func requestsOfEveryShapeAreAnsweredInOrderOnOneConnection() throws {
        let connection = try Connection()
        let unusual = "GET /v1/credentials/unknown HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
        try connection.send(get("/v1/health") + unusual + get("/v1/health") + "GET /v1/ready HTTP/1.1\r\nhost : x\r\n\r\n")
        let text = try connection.responses()
        let statuses = text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
        #expect(statuses == ["200", "404", "200", "400"])
        #expect(!connection.channel.isActive)
    }

    /// Heads of either kind sent a byte at a time are each answered once complete, and not before.
    @Test func headsSentAByteAtATimeAreAnsweredOnceComplete() throws {
        let connection = try Connection()
        let requests = [get("/v1/health"), "GET /v1/credentials/unknown HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
                        get("/v1/ready")]
        let bytes = Array(requests.joined().utf8)
        var ends = requests.reduce(into: [Int]()) { ends, request in ends.append((ends.last ?? 0) + request.utf8.count) }
        var statuses: [Substring] = []
        for (index, byte) in bytes.enumerated() {
            try connection.send(String(decoding: [byte], as: UTF8.self))
            let text = try connection.responses()
            if index + 1 == ends.first {
                ends.removeFirst()
                statuses.append(text.dropFirst("HTTP/1.1 ".count).prefix(3))
            } else {
                #expect(text.isEmpty, "answered after \(index + 1) bytes")
            }
        }
        #expect(statuses == ["200", "404", "200"])
    }

    @Test func queryParametersOnRoutesWithoutOptionsAre400() throws {
        let connection = try Connection()
        try connection.send(get("/metrics?format=json"))
        let text = try connection.responses()
        #expect(text.hasPrefix("HTTP/1.1 400 Bad Request"))
        #expect(text.contains("/metrics takes no query parameters"))
    }

    /// Requests of a peer that does not read its answers wait, unanswered, until it catches up.
    @Test func aPeerThatDoesNotReadIsAnsweredOnlyOnceItCatchesUp() throws {
        let connection = try Connection()
        connection.setWritable(false)
        try connection.send(get("/metrics") + get("/metrics") + get("/v1/health"))
        #expect(try connection.responses().isEmpty)
        connection.setWritable(true)
        let statuses = try connection.responses().components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
        #expect(statuses == ["200", "200", "200"])
    }

    @Test func headersOverTheDecodersLimitAre431AndClose() throws {
        let connection = try Connection()
        let huge = "GET /v1/health HTTP/1.1\r\nhost: x\r\nx-big: " + String(repeating: "a", count: 9000) + "\r\n\r\n"
        try? connection.send(huge)
        let text = try connection.responses()
        #expect(text.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large"))
        #expect(text.contains("connection: close"))
        #expect(!connection.channel.isActive)
    }

    @Test func aLongPollIsAnsweredByTheRotation() throws {
        let connection = try Connection()
        connection.publish(versions: 1)
        try connection.send(get("/v1/credentials/orders-db?wait=30&version=1"))
        #expect(try connection.responses().isEmpty)
        connection.publish(versions: 2)
        connection.channel.embeddedEventLoop.run()
        let text = try connection.responses()
        #expect(text.hasPrefix("HTTP/1.1 200 OK"))
        #expect(text.contains(#""version":2"#))
    }

    @Test func aLongPollTimesOutWith304() throws {
        let connection = try Connection()
        connection.publish(versions: 1)
        try connection.send(get("/v1/credentials/orders-db?wait=2&version=1"))
        connection.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(try connection.responses().isEmpty)
        connection.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(try connection.responses().hasPrefix("HTTP/1.1 304 Not Modified"))
    }

    /// A reload that removes the peer's uid from `allow` reaches a long poll already waiting: it
    /// is answered 403 and never receives the next secret.
    @Test func aLongPollOfAPeerNoLongerAllowedIsAnswered403() throws {
        let connection = try Connection()
        connection.publish(versions: 1)
        try connection.send(get("/v1/credentials/orders-db?wait=30&version=1"))
        connection.shared.policy = PeerPolicy(allowUIDs: [2000], allowGIDs: [])
        connection.channel.embeddedEventLoop.run()
        let text = try connection.responses()
        #expect(text.hasPrefix("HTTP/1.1 403 Forbidden"))
        connection.publish(versions: 2)
        connection.channel.embeddedEventLoop.run()
        #expect(try connection.responses().isEmpty)
    }

    @Test func aLongPollOfAPeerStillAllowedWaitsOn() throws {
        let connection = try Connection()
        connection.publish(versions: 1)
        try connection.send(get("/v1/credentials/orders-db?wait=30&version=1"))
        connection.shared.policy = PeerPolicy(allowUIDs: [1000, 2000], allowGIDs: [])
        connection.channel.embeddedEventLoop.run()
        #expect(try connection.responses().isEmpty)
        connection.publish(versions: 2)
        connection.channel.embeddedEventLoop.run()
        #expect(try connection.responses().contains(#""version":2"#))
    }

    @Test func stoppingAnswersALongPoll304AndCloses() throws {
        let connection = try Connection()
        connection.publish(versions: 1)
        try connection.send(get("/v1/credentials/orders-db?wait=30&version=1"))
        connection.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        connection.channel.embeddedEventLoop.run()
        let text = try connection.responses()
        #expect(text.hasPrefix("HTTP/1.1 304 Not Modified"))
        #expect(text.contains("connection: close"))
        #expect(!connection.channel.isActive)
    }

    @Test func aForeignPeerMayListButNotRead() throws {
        let connection = try Connection(peerUID: 65534)
        connection.publish(versions: 1)
        try connection.send(get("/v1/credentials") + get("/v1/credentials/orders-db"))
        let text = try connection.responses()
        #expect(text.hasPrefix("HTTP/1.1 200 OK"))
        #expect(text.contains("HTTP/1.1 403 Forbidden"))
        #expect(!text.contains("tok"))
    }
}

@Suite struct ConnectionTableTests {
    @Test func foreignPeersNeverTakeEveryPlace() {
        var socket = SocketConfig()
        socket.maxConnections = 4
        socket.maxForeignConnections = 2
        var table = ConnectionTable(limits: ServerLimits(socket: socket))
        do {
            let admitted = table.admit(foreign: true)
            #expect(admitted)
        }
        do {
            let admitted = table.admit(foreign: true)
            #expect(admitted)
        }
        do {
            let admitted = table.admit(foreign: true)
            #expect(!admitted, "the foreign share is full")
        }
        do {
            let admitted = table.admit(foreign: false)
            #expect(admitted)
        }
        do {
            let admitted = table.admit(foreign: false)
            #expect(admitted)
        }
        do {
            let admitted = table.admit(foreign: false)
            #expect(!admitted, "the table is full")
        }
        table.release(foreign: true)
        do {
            let admitted = table.admit(foreign: false)
            #expect(admitted, "a freed foreign place serves an allowed peer too")
        }
        #expect(table.allowed == 3 && table.foreign == 1)
    }
}
