import NIOCore
import NIOHTTP1

/// The usual shape of a socket API request, read in one pass: `GET` or `POST`, an origin-form
/// URI, `HTTP/1.1`, and plain header fields, none of which changes how the message is framed or
/// whether the connection stays open. Anything else is ``Outcome/unusual`` and left to NIO's
/// HTTP/1.1 decoder, so that this parser only ever accepts a strict subset of what that decoder
/// accepts, read the same way (the `agent-request-head` fuzzing harness compares the two). Pure.
enum PlainRequestHead {
    enum Outcome: Equatable {
        /// A complete head of `length` bytes (request line, fields and the empty line).
        case request(HTTPRequestHead, length: Int)
        /// No empty line yet within `maxLength` bytes; more may come.
        case incomplete
        /// Not of the usual shape (or longer than `maxLength`): for NIO's decoder.
        case unusual
    }

    /// Reads the head at the start of `bytes` with at most `maxFields` header fields and
    /// `maxLength` bytes in all.
    static func parse(_ bytes: UnsafeRawBufferPointer, maxFields: Int, maxLength: Int) -> Outcome {
        var reader = Reader(bytes: bytes, end: min(bytes.count, maxLength))
        guard let method = reader.method(), reader.skip(space), let uri = reader.uri(), reader.skip(space),
              reader.skip(http11), reader.skip(crlf) else {
            return reader.ranOut && bytes.count < maxLength ? .incomplete : .unusual
        }
        var fields: [(String, String)] = []
        while true {
            if reader.skip(crlf) {
                let head = HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(fields))
                return .request(head, length: reader.index)
            }
            guard fields.count < maxFields, let field = reader.field() else {
                return reader.ranOut && bytes.count < maxLength ? .incomplete : .unusual
            }
            fields.append(field)
        }
    }

    private static let space = Array(" ".utf8)
    private static let crlf = Array("\r\n".utf8)
    private static let http11 = Array("HTTP/1.1".utf8)
    private static let get = Array("GET".utf8)
    private static let post = Array("POST".utf8)
    private static let colon = Array(":".utf8)

    private static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"): true
        default: false
        }
    }

    private static func isURIByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "/"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "?"), UInt8(ascii: "&"), UInt8(ascii: "="),
             UInt8(ascii: "%"), UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "!"), UInt8(ascii: "$"),
             UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"),
             UInt8(ascii: ","), UInt8(ascii: ";"): true
        default: false
        }
    }

    /// Fields that frame a body or decide the connection's fate: only NIO's decoder reads them.
    private static let framingFields = ["connection", "content-length", "proxy-connection", "transfer-encoding", "upgrade"]
        .map { Array($0.utf8) }

    /// Whether `name` (letters, digits and hyphens) is one of ``framingFields``, in any case.
    private static func framesTheMessage(_ name: UnsafeRawBufferPointer) -> Bool {
        framingFields.contains { field in
            field.count == name.count && zip(field, name).allSatisfy { $0 == $1 | 0x20 }
        }
    }

    /// A cursor over the head; every reading method returns nil (and leaves `ranOut` set when
    /// the bytes ended first) at the first byte not of the usual shape.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        let end: Int
        var index = 0
        var ranOut = false

        init(bytes: UnsafeRawBufferPointer, end: Int) {
            self.bytes = bytes
            self.end = end
        }

        /// Moves past `literal` if the bytes here are it (or, when they end first, its start).
        mutating func skip(_ literal: [UInt8]) -> Bool {
            var at = index
            for byte in literal {
                guard at < end else { ranOut = true; return false }
                guard bytes[at] == byte else { return false }
                at += 1
            }
            index = at
            return true
        }

        mutating func method() -> HTTPMethod? {
            if skip(PlainRequestHead.get) { return .GET }
            if !ranOut, skip(PlainRequestHead.post) { return .POST }
            return nil
        }

        /// An origin-form URI: `/`, then letters, digits, `%` and the unreserved and reserved
        /// characters but `#`, `[` and `]`, up to the space.
        mutating func uri() -> String? {
            guard index < end else { ranOut = true; return nil }
            guard bytes[index] == UInt8(ascii: "/"), let uri = take({ PlainRequestHead.isURIByte($0) }) else { return nil }
            return string(uri)
        }

        /// `name: value` and CRLF, the name letters, digits and hyphens, the value visible ASCII
        /// with single spaces or tabs inside, one optional space or tab after the colon.
        mutating func field() -> (String, String)? {
            guard let name = take({ PlainRequestHead.isNameByte($0) }), !name.isEmpty, skip(PlainRequestHead.colon),
                  !PlainRequestHead.framesTheMessage(UnsafeRawBufferPointer(rebasing: bytes[name])) else { return nil }
            guard index < end else { ranOut = true; return nil }
            if bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t") { index += 1 }
            guard let value = take({ $0 == 0x09 || ($0 >= 0x20 && $0 < 0x7F) }) else { return nil }
            if let first = value.first, bytes[first] == UInt8(ascii: " ") || bytes[first] == UInt8(ascii: "\t") { return nil }
            if let last = value.last, bytes[last] == UInt8(ascii: " ") || bytes[last] == UInt8(ascii: "\t") { return nil }
            guard skip(PlainRequestHead.crlf) else { return nil }
            return (string(name), string(value))
        }

        /// The bytes from here that satisfy `accepted`, up to the first that does not (which must
        /// be within the head).
        private mutating func take(_ accepted: (UInt8) -> Bool) -> Range<Int>? {
            let start = index
            while index < end, accepted(bytes[index]) { index += 1 }
            guard index < end else { ranOut = true; return nil }
            return start..<index
        }

        private func string(_ range: Range<Int>) -> String {
            String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
    }
}
