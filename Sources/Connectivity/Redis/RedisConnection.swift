/// One Redis connection over a ``ByteStream``: sends commands and reads their replies.
///
/// Every call blocks: use it only on a ``BlockingExecutor`` thread.
final class RedisConnection {
    let stream: any ByteStream
    private let reader = RedisReplyReader()
    private let ioTimeout: Double
    /// Replies larger than this are refused rather than buffered.
    private let maxReplyBytes = 1 << 20

    init(stream: any ByteStream, ioTimeout: Double) {
        self.stream = stream
        self.ioTimeout = ioTimeout
    }

    /// Sends one command and waits for its reply (a Redis error is a reply, not a throw). Throws
    /// only ``ProbeFailure``.
    func send(_ arguments: [String]) throws -> RedisReply {
        let deadline = Deadline(seconds: ioTimeout)
        let command = RedisCommand.encode(arguments)
        try command.withUnsafeBytes { bytes in try stream.write(bytes, deadline: deadline) }
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            if let reply = try reader.next() { return reply }
            let count = try buffer.withUnsafeMutableBytes { space in try stream.read(into: space, deadline: deadline) }
            guard count > 0 else {
                throw ProbeFailure(.closed, "the server closed the connection without answering \(arguments[0])",
                                   remedy: StreamSocket.closedRemedy)
            }
            received += count
            guard received <= maxReplyBytes else {
                throw ProbeFailure(.protocolError, "the reply to \(arguments[0]) is larger than \(maxReplyBytes) bytes")
            }
            try buffer.withUnsafeBytes { bytes in try reader.feed(UnsafeRawBufferPointer(rebasing: bytes[..<count])) }
        }
    }
}
