@testable import AuthProxy
import NIOCore
import Testing

/// The Redis proxy's RESP scanners on byte streams split at every position.
struct RESPScannerTests {
    private static let intercepted: Set<String> = ["AUTH", "HELLO"]

    /// Feeds `input` in pieces of `chunk` bytes; returns the events and the forwarded bytes.
    private func scan(_ input: String, chunk: Int) -> (events: [RESPRequestEvent], forwarded: String) {
        var scanner = RESPRequestScanner(interceptedNames: Self.intercepted)
        var events: [RESPRequestEvent] = []
        var forwarded = ""
        let bytes = Array(input.utf8)
        var offset = 0
        while offset < bytes.count {
            var piece = ByteBuffer(bytes: bytes[offset..<min(offset + chunk, bytes.count)])
            offset += chunk
            scanner.append(&piece)
            while let event = scanner.next() { events.append(event) }
            if var out = scanner.takeForwardable() { forwarded += out.readString(length: out.readableBytes) ?? "" }
        }
        return (events, forwarded)
    }

    @Test("Commands are found at any split; AUTH and HELLO are held back, everything else forwarded unchanged")
    func requestBoundaries() {
        let input = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*3\r\n$4\r\nauth\r\n$1\r\nu\r\n$1\r\np\r\nPING\r\n"
            + "*4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$7\r\nSETNAME\r\n$1\r\nx\r\n*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n"
        for chunk in 1...input.utf8.count {
            let (events, forwarded) = scan(input, chunk: chunk)
            #expect(events == [
                .command(RESPCommand(name: "SET", arguments: [], intercepted: false)),
                .command(RESPCommand(name: "AUTH", arguments: [Array("u".utf8), Array("p".utf8)], intercepted: true)),
                .command(RESPCommand(name: "PING", arguments: [], intercepted: false)),
                .command(RESPCommand(name: "HELLO", arguments: [Array("3".utf8), Array("SETNAME".utf8), Array("x".utf8)], intercepted: true)),
                .command(RESPCommand(name: "CLIENT", arguments: [Array("REPLY".utf8), Array("OFF".utf8)], intercepted: false)),
            ], "chunk \(chunk)")
            #expect(forwarded == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n",
                    "chunk \(chunk)")
        }
    }

    @Test("Malformed requests are protocol errors in Redis' words; a 2^40 bulk is refused before any payload")
    func malformedRequests() {
        #expect(scan("*2\r\n$3\r\nGET\r\n$1099511627776\r\n", chunk: 64).events == [.protocolError("Protocol error: invalid bulk length")])
        #expect(scan("*1\r\nxGET\r\n", chunk: 64).events == [.protocolError("Protocol error: expected '$', got 'x'")])
        #expect(scan("*1\r\n$3\r\nGETxx", chunk: 64).events == [.protocolError("Protocol error: expected CR LF after a bulk argument")])
        #expect(scan("*abc\r\n", chunk: 64).events == [.protocolError("Protocol error: invalid multibulk length")])
        let unterminated = String(repeating: "a", count: RESPRequestScanner.maxInlineLength + 10)
        #expect(scan(unterminated, chunk: 4096).events == [.protocolError("Protocol error: too big inline request")])
        let hugeAuth = "*2\r\n$4\r\nAUTH\r\n$100000\r\n" + String(repeating: "p", count: 100_000) + "\r\n"
        #expect(scan(hugeAuth, chunk: 4096).events == [.protocolError("Protocol error: AUTH command too long")])
        // Empty and negative counts are ignored, as Redis does.
        #expect(scan("*0\r\n*-1\r\nPING\r\n", chunk: 3).events == [.command(RESPCommand(name: "PING", arguments: [], intercepted: false))])
    }

    @Test("Commands dropped in the middle of a read (empty, intercepted) take only their own bytes, at any split")
    func droppedCommandsKeepTheirNeighbours() {
        // The PING before each dropped command is forwardable but not yet taken when the dropped
        // one ends (the proxy takes forwardable bytes after handling every command of a read).
        let input = "*1\r\n$4\r\nPING\r\n*0\r\n*1\r\n$4\r\nPING\r\n*-1\r\n*1\r\n$4\r\nPING\r\n\r\n"
            + "*2\r\n$4\r\nAUTH\r\n$1\r\np\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nECHO x\r\n"
        for chunk in 1...input.utf8.count {
            let (events, forwarded) = scan(input, chunk: chunk)
            let ping = RESPRequestEvent.command(RESPCommand(name: "PING", arguments: [], intercepted: false))
            #expect(events == [
                ping, ping, ping,
                .command(RESPCommand(name: "AUTH", arguments: [Array("p".utf8)], intercepted: true)),
                .command(RESPCommand(name: "GET", arguments: [], intercepted: false)),
                .command(RESPCommand(name: "ECHO", arguments: [], intercepted: false)),
            ], "chunk \(chunk)")
            #expect(forwarded == String(repeating: "*1\r\n$4\r\nPING\r\n", count: 3) + "*2\r\n$3\r\nGET\r\n$1\r\nk\r\nECHO x\r\n",
                    "chunk \(chunk)")
        }
    }

    @Test("Inline commands Redis would split otherwise (quotes, NUL, CR, VT, FF) are refused and dropped; the next is read on")
    func inlineCommandsRedisSplitsOtherwise() {
        // What Redis reads each as: RESET, RESET, MULTI, AUTH u p, CLIENT REPLY OFF, PING, GET k, SET k "a b".
        let refusedLines = ["\"RESET\"", "\u{0B}RESET", "\"MULTI\"", "'AUTH' u p", "\u{0C}CLIENT REPLY OFF", "PING\u{0} x",
                            "GET k\r", "SET k \"a b\"", "RE\"\"SET"]
        let refusal = RESPRequestEvent.refused("an inline command may not hold quotes, NUL bytes or whitespace other than spaces and tabs; "
                                               + "send it as a RESP array")
        for line in refusedLines {
            let input = "*1\r\n$4\r\nPING\r\n" + line + "\r\nECHO x\r\n"
            for chunk in 1...input.utf8.count {
                let (events, forwarded) = scan(input, chunk: chunk)
                #expect(events == [.command(RESPCommand(name: "PING", arguments: [], intercepted: false)), refusal,
                                   .command(RESPCommand(name: "ECHO", arguments: [], intercepted: false))], "\(line) chunk \(chunk)")
                #expect(forwarded == "*1\r\n$4\r\nPING\r\nECHO x\r\n", "\(line) chunk \(chunk)")
            }
        }
        // Spaces and tabs alone split as sdssplitargs splits them.
        #expect(scan(" \tauth\t u  p \r\n", chunk: 3).events
                == [.command(RESPCommand(name: "AUTH", arguments: [Array("u".utf8), Array("p".utf8)], intercepted: true))])
    }

    @Test("A command name holding a NUL byte is a protocol error: Redis would look it up only as far as the NUL")
    func nulInCommandName() {
        for name in ["AUTH\u{0}x", "reset\u{0}", "\u{0}", "MULTI\u{0}" + String(repeating: "x", count: 100)] {
            let input = "*1\r\n$4\r\nPING\r\n*1\r\n$\(name.utf8.count)\r\n\(name)\r\n"
            for chunk in [1, 9, input.utf8.count] {
                let (events, forwarded) = scan(input, chunk: chunk)
                #expect(events == [.command(RESPCommand(name: "PING", arguments: [], intercepted: false)),
                                   .protocolError("Protocol error: a NUL byte in a command name")], "chunk \(chunk)")
                #expect(forwarded == "*1\r\n$4\r\nPING\r\n")
            }
        }
    }

    @Test("Command names are looked up by length first; long names are compared too")
    func commandNames() {
        let names: CommandNames = ["GET", "SUBSCRIBE", "PSUBSCRIBE", String(repeating: "X", count: 70)]
        #expect(names.contains("GET") && names.contains("SUBSCRIBE") && names.contains("PSUBSCRIBE"))
        #expect(names.contains(String(repeating: "X", count: 70)))
        #expect(!names.contains("SET") && !names.contains("SSUBSCRIBE") && !names.contains("") && !names.contains("GETS"))
        #expect(!names.contains(String(repeating: "X", count: 63)) && !names.contains(String(repeating: "Y", count: 70)))
    }

    @Test("A large payload streams: its bytes are forwardable before the command ends")
    func largePayloadStreams() {
        var scanner = RESPRequestScanner(interceptedNames: Self.intercepted)
        var head = ByteBuffer(string: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n" + String(repeating: "v", count: 1000))
        scanner.append(&head)
        #expect(scanner.next() == nil)
        #expect((scanner.takeForwardable()?.readableBytes ?? 0) > 1000)
        #expect(!scanner.forwardedAtBoundary)
    }

    /// `arguments` as one RESP array.
    private func multiBulk(_ arguments: [String]) -> String {
        "*\(arguments.count)\r\n" + arguments.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
    }

    /// Whether the one command in `input` blocks, fed whole and byte by byte (nil unless both agree).
    private func blocks(_ input: String) -> Bool? {
        let results = [1, input.utf8.count].map { chunk -> Bool? in
            let (events, _) = scan(input, chunk: chunk)
            guard events.count == 1, case let .command(command) = events[0] else { return nil }
            return command.blocks
        }
        return results[0] == results[1] ? results[0] : nil
    }

    @Test("XREAD and XREADGROUP block when BLOCK is among their options, read as Redis reads them, however many come first")
    func streamReadBlocks() {
        let blocking: [[String]] = [
            ["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
            ["XREAD", "COUNT", "1", "COUNT", "1", "COUNT", "1", "COUNT", "1", "BLOCK", "0", "STREAMS", "s", "$"],
            ["XREAD"] + Array(repeating: ["COUNT", "1"], count: 500).flatMap { $0 } + ["block", "0", "STREAMS", "s", "$"],
            // A group named STREAMS is an option's value, not the end of the options.
            ["xreadgroup", "GROUP", "STREAMS", "c", "Block", "0", "STREAMS", "s", ">"],
            ["XREADGROUP", "GROUP", String(repeating: "g", count: 100), "c", "NOACK", "BLOCK", "10", "STREAMS", "s", ">"],
        ]
        for arguments in blocking {
            #expect(blocks(multiBulk(arguments)) == true, "\(arguments.prefix(12))")
            #expect(blocks(arguments.joined(separator: " ") + "\r\n") == true, "inline \(arguments.prefix(12))")
        }
        // Redis compares an option with strcasecmp, which ends at a NUL byte.
        #expect(blocks(multiBulk(["XREAD", "BLOCK\u{0}x", "0", "STREAMS", "s", "$"])) == true)
        let notBlocking: [[String]] = [
            ["XREAD", "COUNT", "BLOCK", "STREAMS", "s", "$"],          // COUNT's value
            ["XREAD", "STREAMS", "BLOCK", "0"],                         // a stream named BLOCK
            ["XREAD", "COUNT", "1", "STREAMS", "s", "BLOCK", "0", "0"],
            ["XREAD", "BLOCK"],                                         // no value: Redis refuses it
            ["XREAD", "BLOCKS", "0", "STREAMS", "s", "$"],
            ["GET", "BLOCK"],
        ]
        for arguments in notBlocking {
            #expect(blocks(multiBulk(arguments)) == false, "\(arguments)")
            #expect(blocks(arguments.joined(separator: " ") + "\r\n") == false, "inline \(arguments)")
        }
    }

    @Test("CLIENT's first two arguments are kept, at most 16 bytes of each")
    func clientArguments() {
        let input = multiBulk(["client", "reply", String(repeating: "o", count: 40), "extra"]) + "CLIENT REPLY OFF\r\n"
        for chunk in [1, 5, input.utf8.count] {
            #expect(scan(input, chunk: chunk).events == [
                .command(RESPCommand(name: "CLIENT", arguments: [Array("reply".utf8), Array(repeating: UInt8(ascii: "o"), count: 16)],
                                     intercepted: false)),
                .command(RESPCommand(name: "CLIENT", arguments: [Array("REPLY".utf8), Array("OFF".utf8)], intercepted: false)),
            ], "chunk \(chunk)")
        }
        #expect(RESPRequestScanner.keyword(Array("reply\u{0}junk".utf8)) == "REPLY")
    }

    /// Splits `input` into top-level messages with the reply scanner, fed in pieces of `chunk`.
    private func messages(_ input: String, chunk: Int) throws -> [String] {
        var scanner = RESPReplyScanner()
        let bytes = Array(input.utf8)
        var result: [String] = []
        var current: [UInt8] = []
        var offset = 0
        while offset < bytes.count {
            let piece = Array(bytes[offset..<min(offset + chunk, bytes.count)])
            offset += chunk
            var index = 0
            while index < piece.count {
                let (count, completed) = try piece[index...].withUnsafeBytes { try scanner.consume($0) }
                current += piece[index..<(index + count)]
                index += count
                if completed {
                    result.append(String(decoding: current, as: UTF8.self))
                    current = []
                }
            }
        }
        #expect(current.isEmpty && scanner.atMessageStart)
        return result
    }

    @Test("Replies of every RESP2 and RESP3 type are split into whole messages at any chunking")
    func replyBoundaries() throws {
        let replies = ["+OK\r\n", "-ERR wrong\r\n", ":42\r\n", "$5\r\nhe\r\no\r\n", "$-1\r\n", "*-1\r\n", "*0\r\n",
                       "*2\r\n*1\r\n:1\r\n$3\r\nabc\r\n", "%1\r\n+k\r\n*2\r\n_\r\n,1.5\r\n", "~1\r\n#t\r\n",
                       ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n", "|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n", "=7\r\ntxt:abc\r\n",
                       "!3\r\nbad\r\n", "(123456789012345678901234567890\r\n"]
        let input = replies.joined()
        for chunk in [1, 2, 3, 7, 64, input.utf8.count] {
            #expect(try messages(input, chunk: chunk) == replies, "chunk \(chunk)")
        }
    }

    @Test("Broken replies are errors, not hangs")
    func brokenReplies() {
        #expect(throws: RESPReplyError.self) { try messages("?x\r\n", chunk: 8) }
        #expect(throws: RESPReplyError.self) { try messages("$3\r\nabcXY", chunk: 8) }
        #expect(throws: RESPReplyError.self) { try messages("$99999999999999999\r\n", chunk: 8) }
        #expect(throws: RESPReplyError.self) { try messages(String(repeating: "*1\r\n", count: 100) + ":1\r\n", chunk: 8) }
    }
}
