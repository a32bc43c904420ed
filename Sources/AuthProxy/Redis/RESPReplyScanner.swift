/// The server broke RESP; the reason is for the log.
struct RESPReplyError: Error, Equatable {
    var reason: String
}

/// An incremental parser of the server-to-client half of RESP (RESP2 and RESP3) that only finds
/// where each top-level reply ends: payloads are skipped by length, nothing is copied. An
/// attribute (`|`) and the reply it annotates are one message; pushes (`>`) are messages too,
/// which the caller tells apart by ``messageType``.
struct RESPReplyScanner {
    /// Deeper nesting than any Redis reply has.
    static let maxDepth = 64
    static let maxBulkLength = 1 << 40

    private enum State {
        case typeByte
        /// A line whose content does not matter (`+`, `-`, `:`, `_`, `,`, `#`, `(`).
        case skipLine
        /// A length or count line: `value` so far.
        case length(type: UInt8, value: Int, digits: Int, negative: Bool)
        case lengthLF(type: UInt8, value: Int)
        case body(remaining: Int)
        case bodyEnd(seen: Int)
    }

    private struct Aggregate {
        var remaining: Int
        var isAttribute: Bool
    }

    private var state = State.typeByte
    private var stack: [Aggregate] = []
    /// The first byte of the message being read; nil between messages.
    private(set) var messageType: UInt8?

    var atMessageStart: Bool { messageType == nil }

    /// Reads `bytes` up to the end of the current message (or all of them). Returns how many
    /// bytes belong to it and whether the message ended there.
    mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(RESPReplyError) -> (count: Int, completed: Bool) {
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            switch state {
            case .typeByte:
                index += 1
                if messageType == nil { messageType = byte }
                switch byte {
                case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "_"), UInt8(ascii: ","),
                     UInt8(ascii: "#"), UInt8(ascii: "("):
                    state = .skipLine
                case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="), UInt8(ascii: "*"), UInt8(ascii: "%"),
                     UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "|"):
                    state = .length(type: byte, value: 0, digits: 0, negative: false)
                default:
                    throw RESPReplyError(reason: "unknown reply type byte \(byte)")
                }
            case .skipLine:
                // Skip to the LF in one scan.
                guard let newline = bytes[index...].firstIndex(of: UInt8(ascii: "\n")) else {
                    index = bytes.count
                    continue
                }
                index = newline + 1
                if elementDone() { return (index, true) }
            case let .length(type, value, digits, negative):
                index += 1
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"):
                    let next = value * 10 + Int(byte - UInt8(ascii: "0"))
                    guard digits < 14, next <= Self.maxBulkLength else { throw RESPReplyError(reason: "a length over 2^40") }
                    state = .length(type: type, value: next, digits: digits + 1, negative: negative)
                case UInt8(ascii: "-") where digits == 0 && !negative:
                    state = .length(type: type, value: 0, digits: 0, negative: true)
                case UInt8(ascii: "\r") where digits > 0:
                    state = .lengthLF(type: type, value: negative ? -1 : value)
                default:
                    throw RESPReplyError(reason: "an invalid length")
                }
            case let .lengthLF(type, value):
                index += 1
                guard byte == UInt8(ascii: "\n") else { throw RESPReplyError(reason: "a length line without LF") }
                if try lengthDone(type: type, value: value) { return (index, true) }
            case let .body(remaining):
                let take = min(remaining, bytes.count - index)
                index += take
                state = take == remaining ? .bodyEnd(seen: 0) : .body(remaining: remaining - take)
            case let .bodyEnd(seen):
                index += 1
                guard byte == (seen == 0 ? UInt8(ascii: "\r") : UInt8(ascii: "\n")) else {
                    throw RESPReplyError(reason: "a bulk reply without CR LF after its payload")
                }
                if seen == 0 {
                    state = .bodyEnd(seen: 1)
                } else if elementDone() {
                    return (index, true)
                }
            }
        }
        return (index, false)
    }

    /// Returns whether the message ended.
    private mutating func lengthDone(type: UInt8, value: Int) throws(RESPReplyError) -> Bool {
        switch type {
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            if value < 0 { return elementDone() }
            state = value == 0 ? .bodyEnd(seen: 0) : .body(remaining: value)
            return false
        default:
            let isMap = type == UInt8(ascii: "%") || type == UInt8(ascii: "|")
            if value <= 0 { return elementDone() }
            guard stack.count < Self.maxDepth else { throw RESPReplyError(reason: "replies nested deeper than \(Self.maxDepth)") }
            stack.append(Aggregate(remaining: isMap ? value * 2 : value, isAttribute: type == UInt8(ascii: "|")))
            state = .typeByte
            return false
        }
    }

    /// One element is complete; returns whether the whole message is.
    private mutating func elementDone() -> Bool {
        state = .typeByte
        while var top = stack.last {
            top.remaining -= 1
            guard top.remaining == 0 else {
                stack[stack.count - 1] = top
                return false
            }
            stack.removeLast()
            // An attribute's end is not its annotated value's: that value follows.
            if top.isAttribute { return false }
        }
        messageType = nil
        return true
    }
}
