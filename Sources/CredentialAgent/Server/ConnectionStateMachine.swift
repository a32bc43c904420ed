import NIOCore
import NIOHTTP1

/// The life of one connection of the socket API as plain values: which request is being received,
/// which one is being answered, what waits behind it, and whether the peer keeps up with what it
/// is sent. ``HTTPConnectionHandler`` feeds it the channel's events (with the time) and carries out
/// the ``Action`` it returns; nothing here does I/O, so every path is unit-tested without a socket.
///
/// Backpressure: requests are answered one at a time and in order. Parts that arrive while an
/// answer is pending or while the channel is not writable (the peer does not read what it was
/// sent) wait in a queue, and while anything waits the connection is not read from. More than
/// ``Limits/maxQueuedBytes`` waiting closes the connection, and so does a read-idle period spent
/// blocked on output: a peer that stops reading costs a bounded amount of memory and then its place.
struct ConnectionStateMachine {
    /// The bounds the machine enforces.
    struct Limits {
        /// Request bodies (no route takes one); more is answered 413.
        var maxBodyBytes: Int
        /// Bytes of requests that may wait behind an answer or a full output buffer.
        var maxQueuedBytes: Int
        /// From a request's first byte to its end; later is answered 408.
        var requestTimeout: TimeAmount
    }

    /// What the handler does next.
    enum Action: Equatable {
        case none
        /// A request is complete: cancel its deadline (if armed) and answer it, now or later,
        /// through ``startResponse()``.
        case answer(HTTPRequestHead)
        /// Cancel the request deadline (if armed), answer with this error through
        /// ``startResponse()``, then close: the stream cannot go on.
        case refuse(Refusal)
        /// Close the connection without answering.
        case close
        /// Pass the read the channel asked for on.
        case read
        /// Time the request being received: refuse it if it is not complete at this deadline.
        case armRequestDeadline(NIODeadline)
        /// The agent stops: a long poll in progress should end now (the connection closes after).
        case interruptWait
        /// Requests waited and none is complete: read again (if a read was held) and time the
        /// partial one (if any).
        case resume(read: Bool, requestDeadline: NIODeadline?)
    }

    /// An error answer that ends the connection.
    enum Refusal: Equatable {
        case malformed
        case headerTooLarge
        case bodyTooLarge
        case timedOut
    }

    /// How the response being written is framed.
    struct ResponseFraming: Equatable {
        var version: HTTPVersion
        var keepAlive: Bool
    }

    private enum Phase {
        /// Between requests.
        case idle
        /// Bytes of the next request arrived at this time; its head is not decoded yet.
        case started(NIODeadline)
        /// The head is decoded; body parts until the end.
        case receiving(Request)
        /// The request is complete and its answer not yet written.
        case answering(HTTPRequestHead, closeAfter: Bool)
        /// No more requests: closing or closed.
        case closed
    }

    private struct Request {
        var head: HTTPRequestHead
        var started: NIODeadline
        var bodyBytes = 0
    }

    let limits: Limits
    private var phase = Phase.idle
    private var queue = CircularBuffer<(part: HTTPServerRequestPart, bytes: Int)>()
    private var queuedBytes = 0
    private var writable = true
    /// A read the channel asked for while the connection could not take more requests.
    private var readHeld = false
    private var deadlineArmed = false
    /// The agent is stopping: answer what is in progress, then close.
    private var quiescing = false

    init(limits: Limits) {
        self.limits = limits
    }

    private var waiting: Bool { !queue.isEmpty }

    // MARK: Events

    /// Bytes arrived (before decoding): between requests they start the next one, whose deadline
    /// runs from now.
    mutating func bytesArrived(at now: @autoclosure () -> NIODeadline) {
        if case .idle = phase, !waiting { phase = .started(now()) }
    }

    /// The decoder produced `part`, which took about `bytes` bytes on the wire.
    mutating func partReceived(_ part: HTTPServerRequestPart, bytes: @autoclosure () -> Int,
                               at now: @autoclosure () -> NIODeadline) -> Action {
        if case .closed = phase { return .none }
        guard canTakeRequests, !waiting else {
            let bytes = bytes()
            queue.append((part, bytes))
            queuedBytes += bytes
            if queuedBytes > limits.maxQueuedBytes {
                phase = .closed
                return .close
            }
            return .none
        }
        return take(part, at: now)
    }

    /// A read ended: a request begun but not complete gets its deadline, counted from its first
    /// byte; the usual request (complete within one read) never pays for a timer.
    mutating func readComplete() -> Action {
        requestDeadline().map { .armRequestDeadline($0) } ?? .none
    }

    /// The channel asks to read more: granted unless requests wait (then it is held until they
    /// are handled).
    mutating func readRequested() -> Action {
        guard waiting || !writable else { return .read }
        readHeld = true
        return .none
    }

    /// The handler is about to write the answer of the current request: how to frame it, or nil
    /// when there is nothing to answer (the connection closed meanwhile, or it was answered).
    mutating func startResponse() -> ResponseFraming? {
        guard case let .answering(head, closeAfter) = phase else { return nil }
        let keepAlive = head.isKeepAlive && !closeAfter && !quiescing
        phase = keepAlive ? .idle : .closed
        return ResponseFraming(version: head.version, keepAlive: keepAlive)
    }

    /// The answer was handed to the channel: handle what waited behind it.
    mutating func responseWritten(at now: @autoclosure () -> NIODeadline) -> Action {
        drain(at: now)
    }

    /// The peer caught up with (`true`) or fell behind (`false`) what it was sent.
    mutating func writabilityChanged(_ isWritable: Bool, at now: @autoclosure () -> NIODeadline) -> Action {
        writable = isWritable
        return isWritable ? drain(at: now) : .none
    }

    /// No bytes were read for the idle timeout: close unless a request is being received or
    /// answered; a connection blocked because its peer does not read is closed too.
    mutating func readIdle() -> Action {
        switch phase {
        case .idle:
            phase = .closed
            return .close
        case .started, .receiving:
            guard !writable else { return .none }
            phase = .closed
            return .close
        case .answering, .closed:
            return .none
        }
    }

    /// The request deadline armed by ``Action/armRequestDeadline(_:)`` passed.
    mutating func requestDeadlinePassed() -> Action {
        deadlineArmed = false
        switch phase {
        case .started, .receiving:
            return refuse(.timedOut)
        case .idle, .answering, .closed:
            return .none
        }
    }

    /// The decoder found the stream malformed (or a head over the limits).
    mutating func parserFailed(headerTooLarge: Bool) -> Action {
        switch phase {
        case .answering, .closed:
            phase = .closed
            return .close
        case .idle, .started, .receiving:
            return refuse(headerTooLarge ? .headerTooLarge : .malformed)
        }
    }

    /// The agent stops: finish the answer in progress, then close; close at once when idle.
    mutating func quiesce() -> Action {
        quiescing = true
        switch phase {
        case .idle:
            phase = .closed
            return .close
        case .answering:
            return .interruptWait
        case .started, .receiving, .closed:
            return .none
        }
    }

    /// The channel closed.
    mutating func closed() {
        phase = .closed
        queue.removeAll()
        queuedBytes = 0
    }

    // MARK: Internals

    /// Between requests or receiving one, with room in the output buffer.
    private var canTakeRequests: Bool {
        guard writable else { return false }
        switch phase {
        case .idle, .started, .receiving: return true
        case .answering, .closed: return false
        }
    }

    private mutating func take(_ part: HTTPServerRequestPart, at now: () -> NIODeadline) -> Action {
        switch part {
        case let .head(head):
            let started: NIODeadline
            if case let .started(first) = phase { started = first } else { started = now() }
            phase = .receiving(Request(head: head, started: started))
            return .none
        case let .body(buffer):
            guard case var .receiving(request) = phase else { return .none }
            request.bodyBytes += buffer.readableBytes
            if request.bodyBytes > limits.maxBodyBytes { return refuse(.bodyTooLarge) }
            phase = .receiving(request)
            return .none
        case .end:
            guard case let .receiving(request) = phase else { return .none }
            deadlineArmed = false
            phase = .answering(request.head, closeAfter: false)
            return .answer(request.head)
        }
    }

    private mutating func refuse(_ refusal: Refusal) -> Action {
        let head: HTTPRequestHead
        if case let .receiving(request) = phase { head = request.head } else { head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/") }
        queue.removeAll()
        queuedBytes = 0
        deadlineArmed = false
        phase = .answering(head, closeAfter: true)
        return .refuse(refusal)
    }

    /// Takes waiting parts until one completes a request (to be answered) or none is left.
    private mutating func drain(at now: () -> NIODeadline) -> Action {
        while waiting, canTakeRequests {
            let (part, bytes) = queue.removeFirst()
            queuedBytes -= bytes
            let action = take(part, at: now)
            if action != .none { return action }
        }
        guard canTakeRequests else { return .none }
        let read = readHeld && !waiting
        if read { readHeld = false }
        let deadline = requestDeadline()
        return read || deadline != nil ? .resume(read: read, requestDeadline: deadline) : .none
    }

    /// The deadline of a request begun and not yet complete, if not armed already.
    private mutating func requestDeadline() -> NIODeadline? {
        guard !deadlineArmed else { return nil }
        let started: NIODeadline
        switch phase {
        case let .started(first): started = first
        case let .receiving(request): started = request.started
        case .idle, .answering, .closed: return nil
        }
        deadlineArmed = true
        return started + limits.requestTimeout
    }
}
