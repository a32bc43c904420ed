/// The canonical forms that AWS Signature Version 4 hashes: URI path, query string, header block.
///
/// Works on bytes, not Foundation types, because it runs for every token the agent issues.
enum SigV4Canonical {
    private static let hexUpper = Array("0123456789ABCDEF".utf8)

    /// Whether `byte` is an RFC 3986 unreserved character (A-Z a-z 0-9 - . _ ~), which SigV4
    /// never percent-encodes.
    @inline(__always)
    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// Appends `bytes` to `out`, percent-encoding (upper-case hex) everything but unreserved
    /// characters and, when `keepSlash`, `/`.
    static func appendEncoded<Bytes: Sequence<UInt8>>(_ bytes: Bytes, to out: inout [UInt8], keepSlash: Bool = false) {
        for byte in bytes {
            if isUnreserved(byte) || (keepSlash && byte == UInt8(ascii: "/")) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexUpper[Int(byte >> 4)])
                out.append(hexUpper[Int(byte & 0x0f)])
            }
        }
    }

    /// `text` percent-encoded the SigV4 way.
    static func encode(_ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        appendEncoded(text.utf8, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is. `+` stays `+`.
    static func percentDecode<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index != bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                let first = bytes.index(after: index)
                if first != bytes.endIndex {
                    let second = bytes.index(after: first)
                    if second != bytes.endIndex, let high = hexValue(bytes[first]), let low = hexValue(bytes[second]) {
                        out.append(high << 4 | low)
                        index = bytes.index(after: second)
                        continue
                    }
                }
            }
            out.append(byte)
            index = bytes.index(after: index)
        }
        return out
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The canonical URI: the path as given (unencoded bytes), optionally with dot segments
    /// removed and repeated slashes collapsed, then each byte but unreserved characters and `/`
    /// percent-encoded. A path that already holds `%XX` is encoded again, as the SDKs do for every
    /// service but S3.
    static func uri(_ path: String, normalize: Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(path.utf8.count + 8)
        if path.isEmpty {
            return "/"
        }
        if !normalize {
            appendEncoded(path.utf8, to: &out, keepSlash: true)
            return String(decoding: out, as: UTF8.self)
        }
        // RFC 3986 section 5.2.4 plus the collapse of empty segments that AWS asks for.
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            if segment == "." { continue }
            if segment == ".." {
                if !segments.isEmpty { segments.removeLast() }
                continue
            }
            segments.append(segment)
        }
        out.append(UInt8(ascii: "/"))
        for (index, segment) in segments.enumerated() {
            if index > 0 { out.append(UInt8(ascii: "/")) }
            appendEncoded(segment.utf8, to: &out)
        }
        if path.utf8.last == UInt8(ascii: "/"), !segments.isEmpty { out.append(UInt8(ascii: "/")) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Splits a raw query string into decoded name/value pairs, in order. Empty pieces
    /// (`a=1&&b=2`) are dropped; a piece without `=` has an empty value.
    static func decodeQuery(_ query: String) -> [(name: String, value: String)] {
        var pairs: [(name: String, value: String)] = []
        for piece in query.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            if let equals = piece.firstIndex(of: UInt8(ascii: "=")) {
                pairs.append((String(decoding: percentDecode(piece[..<equals]), as: UTF8.self),
                              String(decoding: percentDecode(piece[piece.index(after: equals)...]), as: UTF8.self)))
            } else {
                pairs.append((String(decoding: percentDecode(piece), as: UTF8.self), ""))
            }
        }
        return pairs
    }

    /// The canonical query string: every pair encoded, sorted by encoded name then value.
    static func query(_ pairs: [(name: String, value: String)]) -> String {
        var encoded = pairs.map { (name: encode($0.name), value: encode($0.value)) }
        encoded.sort { $0.name != $1.name ? $0.name.utf8.lexicographicallyPrecedes($1.name.utf8)
                                          : $0.value.utf8.lexicographicallyPrecedes($1.value.utf8) }
        var out = ""
        for (index, pair) in encoded.enumerated() {
            if index > 0 { out += "&" }
            out += pair.name
            out += "="
            out += pair.value
        }
        return out
    }

    /// Header values folded the SigV4 way: leading and trailing white space removed and every run
    /// of white space (including the line breaks of an obsolete multi-line value) made one space.
    static func trimAll(_ value: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(value.utf8.count)
        var pendingSpace = false
        for byte in value.utf8 {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                pendingSpace = !out.isEmpty
                continue
            }
            if pendingSpace {
                out.append(UInt8(ascii: " "))
                pendingSpace = false
            }
            out.append(byte)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Lower-cased names, sorted, with the values of repeated names joined by `,` in the order given.
    static func headers(_ fields: [(name: String, value: String)]) -> [(name: String, value: String)] {
        var merged: [(name: String, value: String)] = []
        merged.reserveCapacity(fields.count)
        for field in fields {
            let name = field.name.lowercased()
            let value = trimAll(field.value)
            if let index = merged.firstIndex(where: { $0.name == name }) {
                merged[index].value += "," + value
            } else {
                merged.append((name, value))
            }
        }
        merged.sort { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        return merged
    }
}

/// The two time stamps SigV4 uses, formatted without Foundation formatters.
struct AmzDate: Sendable, Equatable {
    /// `yyyyMMdd'T'HHmmss'Z'`
    let stamp: String
    /// `yyyyMMdd`, the credential scope's date.
    let day: String

    /// Formats `secondsSince1970` (UTC) with the civil-from-days algorithm (Howard Hinnant's).
    init(secondsSince1970: Int64) {
        let seconds = secondsSince1970
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)

        var bytes = [UInt8](repeating: UInt8(ascii: "0"), count: 16)
        func put(_ value: Int64, at offset: Int, width: Int) {
            var rest = value
            for position in stride(from: offset + width - 1, through: offset, by: -1) {
                bytes[position] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
        }
        put(year, at: 0, width: 4)
        put(month, at: 4, width: 2)
        put(day, at: 6, width: 2)
        bytes[8] = UInt8(ascii: "T")
        put(secondOfDay / 3600, at: 9, width: 2)
        put(secondOfDay / 60 % 60, at: 11, width: 2)
        put(secondOfDay % 60, at: 13, width: 2)
        bytes[15] = UInt8(ascii: "Z")
        stamp = String(decoding: bytes, as: UTF8.self)
        self.day = String(decoding: bytes[0..<8], as: UTF8.self)
    }
}
