@testable import AuthProxy
import NIOCore
import Testing

/// The Redis session's pure parts: what it reads of an injected AUTH's reply.
struct RedisSessionTests {
    @Test("Of an AUTH's reply only OK or an error's first line is read, cut at the first CR or LF byte")
    func authReplies() {
        #expect(AuthReply(ByteBuffer(string: "+OK\r\n")) == .ok)
        #expect(AuthReply(ByteBuffer(string: "-WRONGPASS invalid username-password pair\r\n"))
                == .error("WRONGPASS invalid username-password pair"))
        // A bare LF or CR ends the line too; what follows it (another reply's data) is never read.
        #expect(AuthReply(ByteBuffer(string: "-ERR a\nsecret data\r\n")) == .error("ERR a"))
        #expect(AuthReply(ByteBuffer(string: "-ERR a\rsecret data\r\n")) == .error("ERR a"))
        #expect(AuthReply(ByteBuffer(bytes: Array("-ERR \u{1B}[31mx\r\n".utf8) + [0xFF])) == .error("ERR ?[31mx"))
        // A reply that is neither (a client's data, were replies miscounted) yields nothing of it.
        #expect(AuthReply(ByteBuffer(string: "$5\r\nvalue\r\n")) == .unexpected)
        #expect(AuthReply(ByteBuffer(string: "+OKAY\r\n")) == .unexpected)
        #expect(AuthReply(ByteBuffer(string: ":1\r\n")) == .unexpected)
    }
}
