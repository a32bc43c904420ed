import CloudAuth
import Foundation

/// A sink's `template`: text with `{{field}}` and `{{field | filter | ...}}` placeholders, filled
/// from a credential's fields (see ``CredentialFields``). Nothing else: no expressions, no
/// conditions, no file or process access. A field without a value (JSON null, or an optional
/// field not configured) renders as nothing.
///
/// Parsed when the config is read, so an unknown filter or a malformed placeholder is a config
/// error; whether each field exists depends on the credential's kind, which the config check
/// compares with ``fields``.
public struct SinkTemplate: Sendable, Equatable {
    /// What a placeholder's value passes through, left to right.
    public enum Filter: String, Sendable, CaseIterable {
        /// Percent-encodes every byte but `A-Z a-z 0-9 - . _ ~` (for URLs' user, password, path).
        case urlencode
        /// A JSON string literal, quotes included.
        case json
        /// Standard base64 of the UTF-8 bytes.
        case base64
        /// A single-quoted POSIX shell word.
        case shell

        func apply(_ text: String) -> String {
            switch self {
            case .urlencode: SinkText.percentEncoded(text)
            case .json: String(decoding: JSONValue.string(text).bytes, as: UTF8.self)
            case .base64: Data(text.utf8).base64EncodedString()
            case .shell: SinkText.shellQuoted(text)
            }
        }
    }

    enum Piece: Sendable, Equatable {
        case text(String)
        case field(String, filters: [Filter])
    }

    /// The template as written.
    public let source: String
    let pieces: [Piece]

    /// Why a template cannot be used; the message says what to change.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Parses `source`; throws on an unclosed `{{`, an empty placeholder, a malformed field name
    /// or an unknown filter.
    public init(parsing source: String) throws(ParseError) {
        self.source = source
        var pieces: [Piece] = []
        var rest = Substring(source)
        while let open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { pieces.append(.text(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw ParseError(message: "has a '{{' that is never closed; end each placeholder with '}}'")
            }
            pieces.append(try Self.placeholder(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { pieces.append(.text(String(rest))) }
        self.pieces = pieces
    }

    private static func placeholder(_ inner: Substring) throws(ParseError) -> Piece {
        let parts = inner.split(separator: "|", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        let field = parts[0]
        guard !field.isEmpty else {
            throw ParseError(message: "has an empty placeholder '{{\(inner)}}'; name a field, e.g. {{password}}")
        }
        guard field.utf8.allSatisfy({ (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5f || $0 == 0x2e }) else {
            throw ParseError(message: "'{{\(inner)}}' does not name a field: use a field of the credential's JSON such as {{password}} or {{connection.host}}, and filters after '|'")
        }
        var filters: [Filter] = []
        for name in parts.dropFirst() {
            guard let filter = Filter(rawValue: name) else {
                let known = Filter.allCases.map(\.rawValue).joined(separator: ", ")
                throw ParseError(message: "'{{\(inner)}}' uses the unknown filter '\(name)' (known: \(known))")
            }
            filters.append(filter)
        }
        return .field(field, filters: filters)
    }

    /// The fields the placeholders name, in order of first use.
    public var fields: [String] {
        var seen = Set<String>()
        return pieces.compactMap { piece in
            guard case let .field(name, _) = piece, seen.insert(name).inserted else { return nil }
            return name
        }
    }

    /// The text with every placeholder filled from `fields`.
    public func render(_ fields: CredentialFields) -> Secret {
        var out = ""
        for piece in pieces {
            switch piece {
            case let .text(text): out += text
            case let .field(name, filters): out += filters.reduce(fields.text(of: name)) { $1.apply($0) }
            }
        }
        return Secret(out)
    }

    public static func == (lhs: SinkTemplate, rhs: SinkTemplate) -> Bool { lhs.source == rhs.source }
}

/// Quoting and escaping shared by the sink formats and template filters.
enum SinkText {
    /// RFC 3986 unreserved characters stay; every other byte becomes `%XX`.
    static func percentEncoded(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case 0x41...0x5a, 0x61...0x7a, 0x30...0x39, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(byte)
            default:
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xf)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `'text'`, each `'` written as `'\''`: one word for a POSIX shell, whatever it holds.
    static func shellQuoted(_ text: String) -> String {
        "'" + escaped(text, ["'"], with: "'\\'") + "'"
    }

    /// `"text"`, each `"`, `\`, `` ` `` and `$` preceded by `\`: read back as `text` by a POSIX
    /// shell and by systemd's environment files alike (for text without a line break).
    static func environmentQuoted(_ text: String) -> String {
        "\"" + escaped(text, ["\"", "\\", "`", "$"], with: "\\") + "\""
    }

    /// A `.pgpass` field: `\` and `:` escaped with `\`, as libpq reads them.
    static func pgpassEscaped(_ text: String) -> String {
        escaped(text, ["\\", ":"], with: "\\")
    }

    /// `text` with `prefix` before each scalar of `special`. Scalar by scalar: a comparison of
    /// characters misses a quote that a combining mark follows, which readers see as a quote.
    private static func escaped(_ text: String, _ special: Set<Unicode.Scalar>, with prefix: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if special.contains(scalar) { out.append(contentsOf: prefix.unicodeScalars) }
            out.append(scalar)
        }
        return String(out)
    }
}
