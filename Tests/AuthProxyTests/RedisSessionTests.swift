@testable import AuthProxy
import NIOCore
import Testing

/// The Redis session's pure parts: what it reads of an injected AUTH's reply, how it rewrites HELLO.
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

    @Test("HELLO loses its AUTH part, its options read as Redis reads them; an option Redis refuses ends it")
    func helloWithoutAuth() {
        func hello(_ arguments: [String]) -> [String] {
            RedisSession.helloWithoutAuth(arguments.map { Array($0.utf8) }).map { String(decoding: $0, as: UTF8.self) }
        }
        #expect(hello(["3", "AUTH", "u", "p", "SETNAME", "n"]) == ["HELLO", "3", "SETNAME", "n"])
        #expect(hello(["3", "setname", "n", "auth", "u", "p"]) == ["HELLO", "3", "setname", "n"])
        // A name may be the word AUTH; AUTH needs a user and a password, else Redis refuses it.
        #expect(hello(["3", "SETNAME", "auth"]) == ["HELLO", "3", "SETNAME", "auth"])
        #expect(hello(["3", "AUTH", "onlyuser"]) == ["HELLO", "3", "AUTH"])
        #expect(hello(["3", "SETNAME"]) == ["HELLO", "3", "SETNAME"])
        // Redis reads no option after one it refuses: the password behind it never goes.
        #expect(hello(["3", "FOO", "AUTH", "u", "p"]) == ["HELLO", "3", "FOO"])
        // strcasecmp ends at a NUL byte: Redis takes this for AUTH.
        #expect(hello(["3", "auth\u{0}x", "u", "p"]) == ["HELLO", "3"])
        #expect(hello([]) == ["HELLO"])
        #expect(hello(["2"]) == ["HELLO", "2"])
    }
}
