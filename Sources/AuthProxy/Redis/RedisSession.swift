import CloudAuth
import Foundation
import Logging
import NIOCore

/// One proxied Redis connection: the client's channel and the upstream channel the proxy opened,
/// both on the client's event loop. Requests are scanned for command boundaries, replies for
/// message boundaries, and a queue says what each upcoming reply is for (the client, a blocking
/// command, an AUTH the proxy injected, or a local answer), so injected commands' replies never
/// reach the client and pipelined replies keep their order.
///
/// Authentication: `AUTH user token` goes upstream before the client's first command (and after a
/// `RESET`); the client's own `AUTH` is answered `+OK` locally (inside `MULTI` the credential's own
/// is queued in its place), and `HELLO` is forwarded without its `AUTH` part. Once the last AUTH
/// is `reauth_before` old (or its token is a minute from expiry) a fresh `AUTH` is injected at the
/// next request boundary outside `MULTI`, with no blocking command outstanding; a connection in
/// subscribe mode, after an unsubscribe command, `MONITOR` or `CLIENT REPLY OFF|SKIP` (whose
/// replies cannot be counted), or one still in a transaction or blocked after the grace, is closed
/// at a reply boundary instead, and the client reconnects.
///
/// The session is the handler of the client's channel: it reads the client only while relaying,
/// while the server's side can take more, and while few local answers wait (they wait while the
/// client's own channel takes no more).
final class RedisSession: ClientSession {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer

    private enum Phase {
        case waitingForClient
        case connecting
        case relaying
        case closing
    }

    /// What an upcoming reply is for.
    private enum Expected {
        /// `count` replies for the client.
        case forward(Int)
        /// A blocking command's reply, for the client.
        case blocking
        /// The reply to an AUTH the proxy sent: never shown to the client.
        case injectedAuth(initial: Bool, expiresAt: Date?)
        /// An answer the proxy makes itself, written when its turn comes.
        case local(ByteBuffer, thenClose: Bool)
    }

    private static let blockingNames: CommandNames = [
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF",
    ]
    /// Commands after which replies cannot be counted: subscribe mode, `MONITOR`, and the
    /// unsubscribe commands, which outside subscribe mode Redis answers with pushes alone in RESP3
    /// and with one reply per channel in RESP2.
    private static let untrackedNames: CommandNames = [
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",
    ]
    /// Local answers the queue may hold; at this many the client is not read (each of its requests
    /// could add one) until they are written.
    private static let maxQueuedLocalAnswers = 1024

    let proxy: RedisProxy
    private let refusal: ProxyRefusal?
    private var phase = Phase.waitingForClient
    var client: ChannelHandlerContext?
    var upstream: ChannelHandlerContext?
    private var requests = RESPRequestScanner(interceptedNames: ["AUTH", "HELLO"])
    private var replies = RESPReplyScanner()
    private var expected = CircularBuffer<Expected>()
    /// The `.local` entries in `expected`.
    private var queuedLocalAnswers = 0
    /// A local answer that ends the session is queued: nothing more of the client is read or
    /// handled.
    private var closingAnswerQueued = false
    private var inTransaction = false
    /// Replies can no longer be counted (subscribe mode, an unsubscribe command, MONITOR, CLIENT
    /// REPLY OFF or SKIP).
    private var untracked = false
    private var blockingOutstanding = 0
    private var reauthPending = false
    /// Re-AUTHs refused in a row. Redis leaves a connection logged in as it was when an AUTH fails,
    /// so the first refusal is tried again shortly (the server may not yet know a token issued a
    /// moment ago); a second closes the connection at a reply boundary.
    private var refusedReauths = 0
    private var closeAtBoundary = false
    private var reauthTimer: Scheduled<Void>?
    private var graceTimer: Scheduled<Void>?
    private var handshakeTimer: Scheduled<Void>?
    /// The first bytes of a swallowed reply, for the log when it is an error.
    private var swallowed = ByteBuffer()

    init(proxy: RedisProxy, refusal: ProxyRefusal?) {
        self.proxy = proxy
        self.refusal = refusal
    }

    private var name: String { proxy.configuration.common.credential }

    // MARK: Client side

    func clientActive(_ context: ChannelHandlerContext) {
        client = context
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        proxy.metrics.relayed(clientToServer: bytes.readableBytes)
        requests.append(&bytes)
        switch phase {
        case .waitingForClient: begin(context)
        case .relaying: processRequests()
        case .connecting, .closing: break
        }
    }

    /// Whether the client may be read: only while relaying, the server's side takes more, and the
    /// queue has room for local answers (which wait there while the client's own channel takes no
    /// more), none of which ends the session. Commands for the server go on while the client
    /// reads nothing: the server holds their replies, as it would for a client of its own.
    var clientMayRead: Bool {
        phase == .relaying && (upstream?.channel.isWritable ?? false) && queuedLocalAnswers < Self.maxQueuedLocalAnswers
            && !closingAnswerQueued
    }
    var upstreamMayRead: Bool { client?.channel.isWritable ?? false }

    /// The client's channel takes more again: the server's replies may be read, and the local
    /// answers held for the client go out, the requests behind them are handled and the client is
    /// read on; that from the event loop, not from inside the write that made room.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            upstream?.channel.read()
            if queuedLocalAnswers > 0 {
                context.eventLoop.assumeIsolated().execute { [self] in
                    guard phase == .relaying else { return }
                    processRequests()
                    client?.channel.read()
                }
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closed()
    }

    func closed() {
        phase = .closing
        for timer in [reauthTimer, graceTimer, handshakeTimer] { timer?.cancel() }
        // The session lets go of both contexts, whose handlers (the session itself on the
        // client's side) hold it: all of them are freed with the channels.
        let connections = [client, upstream]
        (client, upstream) = (nil, nil)
        for connection in connections { connection?.close(promise: nil) }
    }

    /// The first bytes: refuse, or connect upstream (the client is not read meanwhile).
    private func begin(_ context: ChannelHandlerContext) {
        if let refusal { return refuse(refusal) }
        phase = .connecting
        let limit = proxy.configuration.common.handshakeTimeout
        handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(limit)) { [self] in
            guard phase == .connecting else { return }
            refuse(.upstreamUnreachable(credential: name, reason: "no connection within \(limit.components.seconds) s"))
        }
        let started = ContinuousClock.now
        let server = proxy.configuration.upstream
        proxy.connectUpstream(on: context.eventLoop, RedisServerHandler(session: self)).assumeIsolated().whenComplete { [self] result in
            switch result {
            case let .success(channel):
                proxy.metrics.upstreamConnected(after: .now - started)
                if phase == .connecting {
                    // Closed with the client even before its TLS handshake ends.
                    client?.channel.closeFuture.whenComplete { _ in channel.close(promise: nil) }
                } else {
                    channel.close(promise: nil)
                }
            case let .failure(error):
                refuse(.upstreamUnreachable(credential: name, reason: "\(server.host):\(server.port): \(error)"))
            }
        }
    }

    // MARK: Server side

    func serverReady(_ context: ChannelHandlerContext) {
        guard phase == .connecting else {
            context.close(promise: nil)
            return
        }
        upstream = context
        handshakeTimer?.cancel()
        phase = .relaying
        guard injectAuth(initial: true) else { return }
        processRequests()
        client?.channel.setOption(.autoRead, value: true).whenComplete { _ in }
    }

    func serverFailed(_ reason: String) {
        switch phase {
        case .connecting: refuse(.upstreamUnreachable(credential: name, reason: reason))
        case .waitingForClient, .relaying: closed()
        // Ending already; a refusal's answer may still be on its way to the client.
        case .closing: break
        }
    }

    func serverRead(_ bytes: ByteBuffer) {
        guard phase == .relaying, let client else { return }
        let heldByLocalAnswers = queuedLocalAnswers >= Self.maxQueuedLocalAnswers
        // Local answers held while the client took no more go before the replies behind them.
        writeLocalAnswers()
        var written = false
        var rangeStart = bytes.readerIndex
        var index = bytes.readerIndex
        func emit(upTo end: Int) {
            if end > rangeStart, let slice = bytes.getSlice(at: rangeStart, length: end - rangeStart) {
                proxy.metrics.relayed(serverToClient: slice.readableBytes)
                client.write(NIOAny(slice), promise: nil)
                written = true
            }
            rangeStart = end
        }
        while index < bytes.writerIndex, phase == .relaying {
            if replies.atMessageStart {
                messageIsPush = bytes.getInteger(at: index, as: UInt8.self) == UInt8(ascii: ">")
                messageForwarded = messageIsPush || !isSwallowed(expected.first)
                if !messageForwarded {
                    emit(upTo: index)
                    swallowed.clear()
                }
            }
            let progress: (count: Int, completed: Bool)
            do {
                progress = try bytes.withUnsafeReadableBytes { all throws(RESPReplyError) in
                    try replies.consume(UnsafeRawBufferPointer(rebasing: all[(index - bytes.readerIndex)...]))
                }
            } catch {
                proxy.logger.warning("Redis server broke the protocol; connection closed",
                                     metadata: ["proxy": "\(name)", "error": "\(error.reason)"])
                emit(upTo: index)
                closed()
                return
            }
            if !messageForwarded, swallowed.readableBytes < 256, let part = bytes.getSlice(at: index, length: min(progress.count, 256)) {
                var part = part
                swallowed.writeBuffer(&part)
            }
            index += progress.count
            if !messageForwarded { rangeStart = index }
            if progress.completed {
                // Replies for the client are relayed as one slice per read; the slice is cut only
                // where something else is written to the client next.
                if messageIsPush || !replyJoinsTheNext { emit(upTo: index) }
                if messageIsPush { writeLocalAnswers() } else { replyCompleted() }
                if closeAtBoundary {
                    emit(upTo: index)
                    forceClose()
                    return
                }
            }
        }
        emit(upTo: index)
        if written { client.flush() }
        if heldByLocalAnswers, queuedLocalAnswers < Self.maxQueuedLocalAnswers, phase == .relaying {
            // The requests read before the queue filled, then the client's next bytes.
            processRequests()
            client.channel.read()
        }
    }

    /// Whether the message being relayed is a RESP3 push (out of band: it answers no request).
    private var messageIsPush = false
    /// Whether the message being relayed goes to the client (else it answers an injected AUTH).
    private var messageForwarded = true

    /// Whether the reply just completed is for the client and is followed by another reply the
    /// client gets as it comes (not a local answer, not one that changes the session's state),
    /// so that the two can go out in one write.
    private var replyJoinsTheNext: Bool {
        guard case let .forward(count)? = expected.first else { return false }
        if count > 1 { return true }
        switch expected.dropFirst().first {
        case nil, .forward?, .blocking?: return true
        case .injectedAuth?, .local?: return false
        }
    }

    private func isSwallowed(_ entry: Expected?) -> Bool {
        if case .injectedAuth = entry { return true }
        return false
    }

    private func replyCompleted() {
        guard let head = expected.first else { return }
        switch head {
        case let .forward(count):
            if count > 1 { expected[expected.startIndex] = .forward(count - 1) } else { expected.removeFirst() }
        case .blocking:
            expected.removeFirst()
            blockingOutstanding -= 1
        case let .injectedAuth(initial, expiresAt):
            expected.removeFirst()
            authAnswered(initial: initial, expiresAt: expiresAt)
        case .local:
            break
        }
        writeLocalAnswers()
        if reauthPending { injectIfPossible() }
    }

    // MARK: Requests

    /// Handles the client's buffered commands. It stops at an answer that ends the session, and
    /// while the queue holds its most local answers and none can be written yet (they wait for a
    /// reply; ``serverRead(_:)`` goes on).
    private func processRequests() {
        while !closingAnswerQueued, roomForLocalAnswer(), phase == .relaying, let event = requests.next() {
            switch event {
            case let .command(command):
                handle(command)
            case let .refused(reason):
                answerLocally("-ERR credagent proxy for \(name): \(reason)\r\n", thenClose: false)
            case let .protocolError(message):
                answerLocally("-ERR \(message)\r\n", thenClose: true)
            }
        }
        forwardRequests()
        upstream?.flush()
        writeLocalAnswers(onlyWhileClientTakesMore: true)
    }

    /// Whether the queue can take another local answer, once those whose turn has come are written
    /// (if the client takes more).
    private func roomForLocalAnswer() -> Bool {
        if queuedLocalAnswers >= Self.maxQueuedLocalAnswers { writeLocalAnswers(onlyWhileClientTakesMore: true) }
        return queuedLocalAnswers < Self.maxQueuedLocalAnswers
    }

    private func forwardRequests() {
        if let bytes = requests.takeForwardable() { upstream?.write(NIOAny(bytes), promise: nil) }
    }

    private func handle(_ command: RESPCommand) {
        switch command.name {
        case "AUTH":
            clientAuth(command.arguments)
        case "HELLO":
            forwardRequests()
            upstream?.write(NIOAny(Self.encode(Self.helloWithoutAuth(command.arguments))), promise: nil)
            expect(.forward(1))
        case "MULTI":
            inTransaction = true
            expect(.forward(1))
        case "EXEC", "DISCARD":
            inTransaction = false
            expect(.forward(1))
        case "RESET" where untracked:
            // Its reply cannot be told from the messages before it, so neither can an AUTH's
            // behind it: the client reconnects instead.
            forwardRequests()
            scheduleCloseAtBoundary()
        case "RESET":
            inTransaction = false
            expect(.forward(1))
            // RESET logs the connection out: log in again right behind it.
            forwardRequests()
            _ = injectAuth(initial: false)
        case _ where Self.untrackedNames.contains(command.name):
            untracked = true
        case "CLIENT" where command.arguments.count >= 2 && RESPRequestScanner.keyword(command.arguments[0]) == "REPLY"
            && RESPRequestScanner.keyword(command.arguments[1]) != "ON":
            untracked = true
        case _ where command.blocks || Self.blockingNames.contains(command.name):
            expect(.blocking)
            blockingOutstanding += 1
        default:
            expect(.forward(1))
        }
        if reauthPending { injectIfPossible() }
        if untracked, reauthPending || closeAtBoundary { scheduleCloseAtBoundary() }
    }

    /// Queues what the next reply is for; nothing once replies cannot be counted.
    private func expect(_ entry: Expected) {
        guard !untracked else { return }
        if case let .forward(added) = entry, case let .forward(count)? = expected.last {
            expected[expected.index(before: expected.endIndex)] = .forward(count + added)
        } else {
            expected.append(entry)
        }
    }

    /// Queues an answer the proxy makes itself, written when its turn comes
    /// (``writeLocalAnswers()``).
    private func answerLocally(_ text: String, thenClose: Bool) {
        expected.append(.local(ByteBuffer(string: text), thenClose: thenClose))
        queuedLocalAnswers += 1
        closingAnswerQueued = closingAnswerQueued || thenClose
    }

    /// Writes the local answers that have reached the head of the queue, with one flush. As the
    /// client's commands are handled (`onlyWhileClientTakesMore`) they wait while its channel takes
    /// no more, so that a client that does not read holds at most a queue of them; before a reply
    /// from the server, whose turn comes after theirs, they go whatever.
    private func writeLocalAnswers(onlyWhileClientTakesMore: Bool = false) {
        guard case .local? = expected.first, replies.atMessageStart, let client,
              client.channel.isWritable || !onlyWhileClientTakesMore else { return }
        while case let .local(answer, thenClose)? = expected.first {
            expected.removeFirst()
            queuedLocalAnswers -= 1
            client.write(NIOAny(answer), promise: nil)
            if thenClose {
                client.flush()
                closed()
                return
            }
        }
        client.flush()
    }

    /// The client's own `AUTH`: the connection stays the credential's user. Outside a transaction
    /// it is answered `+OK` (or with Redis' error for a wrong number of arguments). Inside one,
    /// Redis would queue it and answer it in `EXEC`'s array, so a command is queued in its place:
    /// the credential's own `AUTH`, or for a wrong number of arguments the client's with its
    /// arguments emptied, which Redis refuses as it would have refused the client's.
    private func clientAuth(_ arguments: [[UInt8]]) {
        let valid = (1...2).contains(arguments.count)
        guard inTransaction else {
            return answerLocally(valid ? "+OK\r\n" : arguments.isEmpty ? "-ERR wrong number of arguments for 'auth' command\r\n"
                                 : "-ERR syntax error\r\n", thenClose: false)
        }
        guard valid else {
            forwardRequests()
            upstream?.write(NIOAny(Self.encode([Array("AUTH".utf8)] + arguments.map { _ in [] })), promise: nil)
            return expect(.forward(1))
        }
        guard let current = proxy.credential() else {
            // The server discards the unfinished transaction with the connection.
            return answerLocally("-ERR \(ProxyRefusal.noCredential(credential: name).message)\r\n", thenClose: true)
        }
        forwardRequests()
        upstream?.write(NIOAny(Self.encodeAuth(current.credential)), promise: nil)
        expect(.forward(1))
    }

    // MARK: Authentication

    /// Sends `AUTH user token` upstream; false (and the session refused or closed) without a token.
    @discardableResult
    private func injectAuth(initial: Bool) -> Bool {
        guard let current = proxy.credential() else {
            if initial {
                refuse(.noCredential(credential: name))
            } else {
                proxy.logger.warning("no valid token to authenticate an open Redis connection again; closing it at a reply boundary",
                                     metadata: ["proxy": "\(name)"])
                scheduleCloseAtBoundary()
            }
            return false
        }
        upstream?.write(NIOAny(Self.encodeAuth(current.credential)), promise: nil)
        upstream?.flush()
        expected.append(.injectedAuth(initial: initial, expiresAt: current.expiresAt))
        reauthPending = false
        graceTimer?.cancel()
        return true
    }

    private func authAnswered(initial: Bool, expiresAt: Date?) {
        switch AuthReply(swallowed) {
        case .ok:
            if !initial { proxy.metrics.reauthenticated() }
            refusedReauths = 0
            scheduleReauth(in: reauthDelay(expiresAt: expiresAt))
        case let .error(serverMessage) where initial:
            refuse(.tokenRejected(credential: name, serverMessage: serverMessage))
        case let .error(serverMessage):
            proxy.metrics.reauthFailed()
            refusedReauths += 1
            if refusedReauths == 1 {
                proxy.logger.info("Redis refused the fresh token of an open connection, which keeps its earlier login; trying again shortly",
                                  metadata: ["proxy": "\(name)", "error": "\(serverMessage)"])
                scheduleReauth(in: proxy.configuration.reauthRetryDelay)
            } else {
                proxy.logger.warning("Redis refused the fresh token of an open connection; closing it at a reply boundary",
                                     metadata: ["proxy": "\(name)", "error": "\(serverMessage)"])
                scheduleCloseAtBoundary()
            }
        case .unexpected where initial:
            refuse(.upstreamProtocol(credential: name, reason: "the server answered AUTH with neither OK nor an error"))
        case .unexpected:
            // The replies are no longer counted right: nothing more may reach the client.
            proxy.logger.warning("Redis answered an injected AUTH with neither OK nor an error; connection closed",
                                 metadata: ["proxy": "\(name)"])
            closed()
        }
    }

    /// How long a login with a token valid until `expiresAt` may serve: `reauth_before`, or until a
    /// minute before the expiry when that is sooner (at least 5 s).
    private func reauthDelay(expiresAt: Date?) -> Duration {
        let delay = proxy.configuration.reauthBefore
        guard let expiresAt else { return delay }
        let untilExpiry = Duration.milliseconds(Int64((expiresAt.timeIntervalSinceNow - 60) * 1000))
        return min(delay, max(untilExpiry, .seconds(5)))
    }

    /// Makes the re-authentication due in `delay` (in place of any due earlier or later).
    private func scheduleReauth(in delay: Duration) {
        guard let eventLoop = client?.eventLoop else { return }
        reauthTimer?.cancel()
        reauthTimer = eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(delay)) { [self] in reauthDue() }
    }

    private func reauthDue() {
        guard phase == .relaying else { return }
        reauthPending = true
        if untracked {
            scheduleCloseAtBoundary()
            return
        }
        injectIfPossible()
        guard reauthPending, let eventLoop = client?.eventLoop else { return }
        graceTimer = eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(proxy.configuration.reauthGrace)) { [self] in
            if reauthPending { scheduleCloseAtBoundary() }
        }
    }

    /// Injects the pending re-AUTH when the request stream is at a boundary outside a
    /// transaction, with no blocking command outstanding and replies still counted.
    private func injectIfPossible() {
        guard reauthPending, phase == .relaying, !untracked, !inTransaction, blockingOutstanding == 0,
              requests.forwardedAtBoundary else { return }
        forwardRequests()
        injectAuth(initial: false)
    }

    /// Closes the connection after the reply being relayed (now if none is).
    private func scheduleCloseAtBoundary() {
        closeAtBoundary = true
        if replies.atMessageStart { forceClose() }
    }

    private func forceClose() {
        guard phase == .relaying else { return }
        // Local answers due go out first (a protocol error's ends the session itself).
        writeLocalAnswers()
        guard phase == .relaying else { return }
        proxy.metrics.forcedReconnect()
        proxy.logger.info("Redis connection closed at a reply boundary to authenticate again on a new one",
                          metadata: ["proxy": "\(name)"])
        client?.flush()
        closed()
    }

    // MARK: Refusals

    /// Answers `-ERR credagent proxy for NAME: ...` and closes; counted by reason.
    private func refuse(_ refusal: ProxyRefusal) {
        guard phase != .closing, let client else { return }
        phase = .closing
        handshakeTimer?.cancel()
        proxy.metrics.rejected(refusal)
        proxy.logger.log(level: refusal.metricReason == "peer_not_allowed" || refusal.metricReason == "too_many_connections" ? .debug : .warning,
                         "proxy connection refused",
                         metadata: ["proxy": "\(name)", "reason": "\(refusal.metricReason)", "error": "\(refusal.message)"])
        var answer = ByteBuffer()
        answer.writeString("-ERR \(refusal.message.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " "))\r\n")
        client.writeAndFlush(NIOAny(answer)).assumeIsolated().whenComplete { _ in client.close(promise: nil) }
        // Closed once the answer is on its way: the upstream channel's end no longer ends the
        // session (``serverFailed(_:)``), which would close the client first.
        upstream?.close(promise: nil)
    }

    // MARK: Encoding

    /// `AUTH user token`.
    private static func encodeAuth(_ credential: ProxyCredential) -> ByteBuffer {
        encode([Array("AUTH".utf8), Array(credential.username.utf8), Array(credential.password.reveal().utf8)])
    }

    /// A command in RESP's multi-bulk form.
    static func encode(_ arguments: [[UInt8]]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString("*\(arguments.count)\r\n")
        for argument in arguments {
            buffer.writeString("$\(argument.count)\r\n")
            buffer.writeBytes(argument)
            buffer.writeString("\r\n")
        }
        return buffer
    }

    /// `HELLO [protover] [SETNAME name]` from the client's arguments with `AUTH user pass` left out,
    /// the options read as Redis reads them. An option Redis refuses (`AUTH` without a user and a
    /// password, `SETNAME` without a name, an unknown one) goes as it came, the last argument:
    /// Redis answers its syntax error and reads no further.
    static func helloWithoutAuth(_ arguments: [[UInt8]]) -> [[UInt8]] {
        var result = [Array("HELLO".utf8)] + arguments.prefix(1)
        var index = 1
        while index < arguments.count {
            let following = arguments.count - index - 1
            switch RESPRequestScanner.keyword(arguments[index]) {
            case "AUTH" where following >= 2:
                index += 3
            case "SETNAME" where following >= 1:
                result += arguments[index...(index + 1)]
                index += 2
            default:
                result.append(arguments[index])
                return result
            }
        }
        return result
    }
}

/// What the server answered an AUTH the proxy sent, read from the reply's first bytes. Of an
/// error only its first line is kept (cut at the first CR or LF byte, printable ASCII): the log
/// and the client may see that much, never more of a reply.
enum AuthReply: Equatable {
    case ok
    case error(String)
    /// Neither: the replies are not counted right.
    case unexpected

    init(_ reply: ByteBuffer) {
        let bytes = reply.readableBytesView
        if bytes.starts(with: "+OK\r".utf8) {
            self = .ok
        } else if bytes.first == UInt8(ascii: "-") {
            let line = bytes.dropFirst().prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }
            self = .error(String(decoding: line.map { (0x20...0x7e).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self))
        } else {
            self = .unexpected
        }
    }
}
