import NIOCore

/// A client command as far as the Redis proxy needs to know it: its name (upper-cased) and, for
/// the few commands whose arguments matter to the proxy, those arguments.
struct RESPCommand: Equatable {
    /// The first argument, upper-cased; empty when it is longer than the proxy looks at.
    var name: String
    /// Every argument after the name for an intercepted command; for `CLIENT` the first 16 bytes
    /// of its first two; otherwise empty.
    var arguments: [[UInt8]]
    /// Whether the command's bytes were held back (not forwarded): the proxy answers or rewrites it.
    var intercepted: Bool
    /// For `XREAD` and `XREADGROUP`: whether the `BLOCK` option is among its options.
    var blocks = false
}

/// A set of command names (upper-cased) that answers most lookups without hashing: a name of a
/// length no member has is not in it. Every command the proxy relays is looked up, and most
/// (`GET`, `SET`) have lengths none of these sets' members have.
struct CommandNames: ExpressibleByArrayLiteral {
    private let names: Set<String>
    /// Bit `n` is set when a member is `n` bytes long; lengths of 63 and more share bit 63.
    private let lengths: UInt64

    init(_ names: Set<String>) {
        self.names = names
        lengths = names.reduce(0) { $0 | Self.bit($1.utf8.count) }
    }

    init(arrayLiteral names: String...) {
        self.init(Set(names))
    }

    func contains(_ name: String) -> Bool {
        lengths & Self.bit(name.utf8.count) != 0 && names.contains(name)
    }

    private static func bit(_ length: Int) -> UInt64 {
        1 << UInt64(min(length, 63))
    }
}

/// What the scanner found next in the client's bytes.
enum RESPRequestEvent: Equatable {
    /// A command ended here. Its bytes, unless intercepted, are forwardable
    /// (``RESPRequestScanner/takeForwardable()``).
    case command(RESPCommand)
    /// An inline command the proxy could read otherwise than Redis does ended here; its bytes were
    /// dropped, and the message says why (the connection may carry on).
    case refused(String)
    /// The client broke the protocol; the message is Redis' own wording for the same fault.
    case protocolError(String)
}

/// An incremental parser of the client-to-server half of RESP (multi-bulk commands, and inline
/// commands as typed into telnet) that finds command boundaries without copying arguments: bulk
/// payloads are skipped by length, so a 100 MB `SET` streams through.
///
/// Bytes of ordinary commands become forwardable as soon as the command's name is known; the
/// bytes of intercepted commands (`AUTH`, `HELLO`) are held until the command ends and then
/// dropped, the proxy answering or rewriting them. Limits follow Redis: a bulk of at most 512 MB,
/// an inline command or an intercepted command of at most 64 KB.
///
/// The proxy must read a command as Redis will. Redis compares a name or keyword with
/// `strcasecmp`, which ends at a NUL byte, so a name holding one is a protocol error here; and it
/// splits an inline command with `sdssplitargs`, which honours quotes and more whitespace than
/// spaces and tabs, so an inline command holding a quote, a NUL, CR, VT or FF is refused: what is
/// left splits the same way on spaces and tabs.
struct RESPRequestScanner {
    static let maxBulkLength = 512 * 1024 * 1024
    static let maxMultiBulkLength = 1024 * 1024 * 1024
    static let maxInlineLength = 64 * 1024
    /// A name longer than this is no command the proxy knows: forwarded as is.
    static let maxNameLength = 64

    private enum State {
        /// Between commands.
        case start
        /// `*` seen; reading the argument count.
        case multiBulkCount(Int, digits: Int)
        /// Expecting `$` of argument `index`.
        case bulkHeader
        /// Reading the length after `$`.
        case bulkLength(Int, digits: Int)
        /// Reading a bulk's payload: `remaining` bytes left.
        case bulkBody(remaining: Int)
        /// The CR LF after a payload: `seen` of the two read.
        case bulkEnd(seen: Int)
        /// A line-length field ended with CR; expecting LF.
        case lengthLF(next: LengthKind)
        /// Inside an inline command line.
        case inline
        /// A protocol error was reported; nothing more is read.
        case failed
    }

    private enum LengthKind {
        case count(Int)
        case bulk(Int)

        var isCount: Bool {
            if case .count = self { return true }
            return false
        }
    }

    /// The names whose commands are held back and handed over whole.
    private let interceptedNames: CommandNames
    private var buffer = ByteBuffer()
    /// Offset (from the buffer's reader index) up to which bytes are parsed.
    private var parsed = 0
    /// Offset up to which parsed bytes may be forwarded.
    private var forwardable = 0
    private var state = State.start
    /// Counts the changes that parsing makes to `buffer` (bytes of a command dropped), so that a
    /// pass over its bytes knows when to stop (see ``next()``).
    private var bufferChanges = 0
    private var argumentsLeft = 0
    private var argumentIndex = 0
    /// Bytes of the current argument kept (name, or arguments of interest), at most `keptLength`.
    private var current: [UInt8] = []
    private var keptLength = 0
    private var name = ""
    private var arguments: [[UInt8]] = []
    private var interesting = ArgumentInterest.none
    private var streamOptions = StreamReadOptions()
    /// Where the current command started (an offset like `parsed`).
    private var commandStart = 0

    /// What the scanner keeps of a command's arguments after its name.
    private enum ArgumentInterest {
        case none
        /// Every argument, whole (intercepted commands).
        case all
        /// The first 16 bytes of each of the first two (`CLIENT REPLY OFF`).
        case leading
        /// The first 16 bytes of each option, read as they come (`XREAD ... BLOCK`).
        case streamOptions
    }

    /// Of an argument kept in part, as many bytes as any keyword the proxy reads needs, and more.
    private static let keywordPrefixLength = 16

    init(interceptedNames: Set<String>) {
        self.interceptedNames = CommandNames(interceptedNames)
    }

    /// Whether the bytes forwarded so far end at a command boundary (nothing of a started command
    /// has been handed out), so that another command may be written upstream here.
    var forwardedAtBoundary: Bool { !forwardingCommand }
    /// Whether bytes of the unfinished current command were made forwardable.
    private var forwardingCommand = false

    /// Adds bytes the client sent.
    mutating func append(_ bytes: inout ByteBuffer) {
        if buffer.readableBytes == 0 {
            buffer = bytes
            bytes = ByteBuffer()
            parsed = 0
            forwardable = 0
            commandStart = 0
        } else {
            buffer.writeBuffer(&bytes)
        }
    }

    /// The next command boundary or error, or nil when more bytes are needed.
    mutating func next() -> RESPRequestEvent? {
        scanning: while parsed < buffer.readableBytes {
            // The bytes are read through one pointer per pass, not one by one through the buffer
            // (every read of which is a checked access to its storage); a pass ends when a step
            // changes the buffer. The copy keeps the pointer's storage alive meanwhile.
            let bytes = buffer
            let changesBefore = bufferChanges
            switch bytes.withUnsafeReadableBytes({ scan($0, bufferChangesBefore: changesBefore) }) {
            case let .finished(event): return event
            case .bufferChanged: continue
            case .needMore: break scanning
            }
        }
        if interesting == .all, parsed - commandStart > Self.maxInlineLength {
            return fail("\(name) command too long")
        }
        // A command being streamed: what arrived of it may go on now.
        if forwardingCommand { forwardable = parsed }
        return nil
    }

    /// How a pass over the buffered bytes ended.
    private enum ScanOutcome {
        /// `next()` returns this.
        case finished(RESPRequestEvent?)
        /// A step changed the buffer: another pass reads it afresh.
        case bufferChanged
        /// Every buffered byte is parsed; the next bytes may end a command.
        case needMore
    }

    /// Runs the parser over `bytes`, the buffer's readable bytes, from `parsed` on, until an event,
    /// the end of the bytes, or a step that changes the buffer (its count of changes moves past
    /// `changes`, the count when `bytes` was taken).
    private mutating func scan(_ bytes: UnsafeRawBufferPointer, bufferChangesBefore changes: Int) -> ScanOutcome {
        while parsed < bytes.count {
            if bufferChanges != changes { return .bufferChanged }
            let byte = bytes[parsed]
            switch state {
            case .start:
                commandStart = parsed
                if byte == UInt8(ascii: "*") {
                    state = .multiBulkCount(0, digits: 0)
                    parsed += 1
                } else {
                    state = .inline
                }
            case let .multiBulkCount(value, digits):
                parsed += 1
                if let event = lengthDigit(byte, value: value, digits: digits, kind: { .count($0) }, limit: Self.maxMultiBulkLength,
                                           error: "invalid multibulk length") { return .finished(event) }
            case .bulkHeader:
                parsed += 1
                guard byte == UInt8(ascii: "$") else { return .finished(fail("expected '$', got '\(Self.printable(byte))'")) }
                state = .bulkLength(0, digits: 0)
            case let .bulkLength(value, digits):
                parsed += 1
                if let event = lengthDigit(byte, value: value, digits: digits, kind: { .bulk($0) }, limit: Self.maxBulkLength,
                                           error: "invalid bulk length") { return .finished(event) }
            case let .lengthLF(next):
                parsed += 1
                guard byte == UInt8(ascii: "\n") else {
                    return .finished(fail(next.isCount ? "invalid multibulk length" : "invalid bulk length"))
                }
                if let event = lengthDone(next) { return .finished(event) }
            case let .bulkBody(remaining):
                let take = min(bytes.count - parsed, remaining)
                let kept = min(take, keptLength - current.count)
                if kept > 0 {
                    current.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[parsed..<(parsed + kept)]))
                }
                parsed += take
                state = remaining - take == 0 ? .bulkEnd(seen: 0) : .bulkBody(remaining: remaining - take)
            case let .bulkEnd(seen):
                parsed += 1
                guard byte == (seen == 0 ? UInt8(ascii: "\r") : UInt8(ascii: "\n")) else {
                    return .finished(fail("expected CR LF after a bulk argument"))
                }
                if seen == 0 {
                    state = .bulkEnd(seen: 1)
                } else if let event = argumentDone() {
                    return .finished(event)
                }
            case .inline:
                return inlineCommand()
            case .failed:
                return .finished(nil)
            }
        }
        return bufferChanges != changes ? .bufferChanged : .needMore
    }

    /// Parsed bytes that may go to the server, taken out of the scanner.
    mutating func takeForwardable() -> ByteBuffer? {
        guard forwardable > 0 else { return nil }
        let slice = buffer.readSlice(length: forwardable)
        parsed -= forwardable
        commandStart = max(0, commandStart - forwardable)
        forwardable = 0
        compact()
        return slice
    }

    /// Drops bytes before `offset` (held bytes of an intercepted command).
    private mutating func discard(upTo offset: Int) {
        bufferChanges += 1
        buffer.moveReaderIndex(forwardBy: offset)
        parsed -= offset
        forwardable = max(0, forwardable - offset)
        commandStart = max(0, commandStart - offset)
        compact()
    }

    /// Drops the bytes of the command just ended (held back, never forwarded), keeping forwardable
    /// bytes of earlier commands that were not taken yet.
    private mutating func removeCommandBytes() {
        guard commandStart > 0 else { return discard(upTo: parsed) }
        bufferChanges += 1
        var kept = ByteBuffer()
        kept.reserveCapacity(buffer.readableBytes - (parsed - commandStart))
        var before = buffer.getSlice(at: buffer.readerIndex, length: commandStart)!
        var after = buffer.getSlice(at: buffer.readerIndex + parsed, length: buffer.readableBytes - parsed)!
        kept.writeBuffer(&before)
        kept.writeBuffer(&after)
        buffer = kept
        parsed = commandStart
    }

    private mutating func compact() {
        if buffer.readableBytes == 0 {
            buffer.clear()
        } else if buffer.readerIndex > 64 * 1024 {
            buffer.discardReadBytes()
        }
    }

    // MARK: Lengths

    /// A digit (or the sign, or the CR) of a length line. A negative count (`*-1`) is read as
    /// zero: Redis ignores such a command.
    private mutating func lengthDigit(_ byte: UInt8, value: Int, digits: Int, kind: (Int) -> LengthKind, limit: Int,
                                      error: String) -> RESPRequestEvent? {
        let isCount = kind(0).isCount
        let negative = digits >= Self.negativeMarker
        func store(_ value: Int, _ digits: Int) {
            state = isCount ? .multiBulkCount(value, digits: digits) : .bulkLength(value, digits: digits)
        }
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            let next = negative ? 0 : value * 10 + Int(byte - UInt8(ascii: "0"))
            guard next <= limit, digits % Self.negativeMarker < 12 else { return fail(error) }
            store(next, digits + 1)
        case UInt8(ascii: "-") where digits == 0 && isCount:
            store(0, Self.negativeMarker)
        case UInt8(ascii: "\r") where digits % Self.negativeMarker > 0:
            state = .lengthLF(next: kind(value))
        default:
            return fail(error)
        }
        return nil
    }

    private static let negativeMarker = 100

    private mutating func lengthDone(_ kind: LengthKind) -> RESPRequestEvent? {
        switch kind {
        case let .count(count):
            guard count > 0 else {
                // An empty command: Redis ignores it, so it is dropped here (its own bytes only:
                // commands before it in the buffer may not have been taken yet).
                removeCommandBytes()
                state = .start
                return nil
            }
            argumentsLeft = count
            argumentIndex = 0
            name = ""
            arguments = []
            interesting = .none
            state = .bulkHeader
        case let .bulk(length):
            keptLength = keptLengthOfCurrentArgument
            current.removeAll(keepingCapacity: true)
            if interesting == .all, parsed - commandStart + length > Self.maxInlineLength {
                return fail("\(name) command too long")
            }
            state = length == 0 ? .bulkEnd(seen: 0) : .bulkBody(remaining: length)
        }
        return nil
    }

    private mutating func argumentDone() -> RESPRequestEvent? {
        if argumentIndex == 0 {
            // Redis would look the name up as far as its NUL, maybe as another command's.
            if current.contains(0) { return fail("a NUL byte in a command name") }
            nameRead(current.count <= Self.maxNameLength ? current : [])
        } else {
            argumentRead(current, following: argumentsLeft - 1)
        }
        if interesting != .all {
            forwardable = parsed
            forwardingCommand = true
        }
        argumentIndex += 1
        argumentsLeft -= 1
        guard argumentsLeft == 0 else {
            state = .bulkHeader
            return nil
        }
        return commandDone()
    }

    private mutating func commandDone() -> RESPRequestEvent {
        state = .start
        let command = RESPCommand(name: name, arguments: arguments, intercepted: interesting == .all,
                                  blocks: interesting == .streamOptions && streamOptions.blocks)
        if command.intercepted { removeCommandBytes() }
        argumentIndex = 0
        interesting = .none
        forwardingCommand = false
        arguments = []
        return .command(command)
    }

    // MARK: Names and arguments

    /// The command's name is `bytes` (empty when longer than the proxy looks at): what of its
    /// arguments to keep follows from it.
    private mutating func nameRead(_ bytes: some Collection<UInt8>) {
        name = Self.asciiUppercased(bytes)
        if interceptedNames.contains(name) {
            interesting = .all
        } else if Self.namesWithLeadingArguments.contains(name) {
            interesting = .leading
        } else if Self.streamReadNames.contains(name) {
            interesting = .streamOptions
            streamOptions = StreamReadOptions()
        } else {
            interesting = .none
        }
    }

    /// How many bytes of the argument at `argumentIndex` to keep.
    private var keptLengthOfCurrentArgument: Int {
        switch interesting {
        case _ where argumentIndex == 0: Self.maxNameLength + 1
        case .all: Int.max
        case .leading: argumentIndex <= 2 ? Self.keywordPrefixLength : 0
        case .streamOptions: streamOptions.ended ? 0 : Self.keywordPrefixLength
        case .none: 0
        }
    }

    /// The argument at `argumentIndex` (after the name) is `bytes`, as many as kept; `following`
    /// arguments come after it.
    private mutating func argumentRead(_ bytes: [UInt8], following: Int) {
        switch interesting {
        case .all: arguments.append(bytes)
        case .leading where argumentIndex <= 2: arguments.append(bytes)
        case .streamOptions: streamOptions.read(bytes, following: following)
        case .leading, .none: break
        }
    }

    /// An argument as Redis compares it with a keyword (`strcasecmp`): up to its first NUL byte,
    /// upper-cased.
    static func keyword(_ bytes: [UInt8]) -> String {
        asciiUppercased(bytes.prefix { $0 != 0 })
    }

    // MARK: Inline commands

    /// An inline command (`PING\r\n`): the whole line is needed first. It is forwarded unchanged
    /// unless intercepted.
    private mutating func inlineCommand() -> ScanOutcome {
        let lineStart = buffer.readerIndex + parsed
        let view = buffer.readableBytesView.dropFirst(parsed)
        guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
            return .finished(view.count > Self.maxInlineLength ? fail("too big inline request") : nil)
        }
        var line = Array(buffer.readableBytesView[view.startIndex..<newline])
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        let lineLength = newline - lineStart + 1
        parsed += lineLength
        if line.contains(where: Self.refusedInInline.contains) {
            removeCommandBytes()
            state = .start
            return .finished(.refused("an inline command may not hold quotes, NUL bytes or whitespace other than spaces and tabs; "
                                      + "send it as a RESP array"))
        }
        let words = line.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
        guard let first = words.first else {
            // An empty line: Redis ignores it (dropped as an empty command is), and the commands
            // after it are read on.
            removeCommandBytes()
            state = .start
            return .bufferChanged
        }
        nameRead(first.count <= Self.maxNameLength ? first : [])
        if interesting != .none {
            for (index, word) in words.enumerated().dropFirst() {
                argumentIndex = index
                argumentRead(Array(word.prefix(keptLengthOfCurrentArgument)), following: words.count - index - 1)
            }
        }
        if interesting != .all { forwardable = parsed }
        return .finished(commandDone())
    }

    /// Bytes `sdssplitargs` reads otherwise than as a word's or as a space: quotes, NUL (the end
    /// of the line to it), and the whitespace besides space and tab (CR, VT, FF; LF ends the line).
    private static let refusedInInline: Set<UInt8> = [0, 0x0B, 0x0C, UInt8(ascii: "\r"), UInt8(ascii: "\""), UInt8(ascii: "'")]

    /// Commands whose first two arguments the proxy reads (`CLIENT REPLY`).
    private static let namesWithLeadingArguments: CommandNames = ["CLIENT"]
    /// Commands whose options the proxy reads (`BLOCK`).
    private static let streamReadNames: CommandNames = ["XREAD", "XREADGROUP"]

    /// A command name upper-cased byte by byte (Redis' names are ASCII): every command passes
    /// here, and Unicode case mapping is far slower.
    static func asciiUppercased(_ bytes: some Collection<UInt8>) -> String {
        String(unsafeUninitializedCapacity: bytes.count) { buffer in
            for (index, byte) in bytes.enumerated() {
                buffer[index] = (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) ? byte - 0x20 : byte
            }
            return bytes.count
        }
    }

    private mutating func fail(_ message: String) -> RESPRequestEvent {
        state = .failed
        return .protocolError("Protocol error: \(message)")
    }

    private static func printable(_ byte: UInt8) -> String {
        (0x21...0x7e).contains(byte) ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
    }
}

/// `XREAD`'s and `XREADGROUP`'s options read as Redis reads them, one argument at a time: each
/// option's values are skipped, and the options end at `STREAMS` (or at an argument that is no
/// option, which Redis refuses at once). Whether `BLOCK` was among them: however many options
/// come before it, Redis takes it.
struct StreamReadOptions {
    private(set) var blocks = false
    /// No option follows: the rest of the command is streams and IDs.
    private(set) var ended = false
    private var valuesToSkip = 0

    /// Reads the next argument (its first bytes at least), with `following` arguments after it.
    mutating func read(_ argument: [UInt8], following: Int) {
        guard !ended else { return }
        guard valuesToSkip == 0 else {
            valuesToSkip -= 1
            return
        }
        switch RESPRequestScanner.keyword(argument) {
        case "BLOCK" where following >= 1:
            blocks = true
            valuesToSkip = 1
        case "COUNT" where following >= 1: valuesToSkip = 1
        case "GROUP" where following >= 2: valuesToSkip = 2
        case "NOACK": break
        default: ended = true
        }
    }
}
