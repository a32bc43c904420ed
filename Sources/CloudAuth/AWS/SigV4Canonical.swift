import Foundation

/// The canonical forms that AWS Signature Version 4 hashes: URI path, query string, header block.
///
/// Works on bytes, not Foundation types, because it runs for every token the agent issues.
enum SigV4Canonical {
    /// Appends `bytes` as lower-case hex, the form of SigV4's hashes and signatures.
    static func appendHex(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(addingCapacity: 2 * bytes.count) { hex in
            for byte in bytes {
                hex.append(hexDigit(byte >> 4))
                hex.append(hexDigit(byte & 0x0f))
            }
        }
    }

    @inline(__always)
    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }

    /// Appends `value` in decimal.
    static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        // Written from the end; an Int has at most 19 digits.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var rest = value.magnitude
            var start = digits.count
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            } while rest > 0
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }

    /// Appends `text` in lower case: ASCII letters byte by byte, anything else as Swift lower-cases it.
    static func appendLowercased(_ text: String, to out: inout [UInt8]) {
        let ascii: Bool? = text.utf8.withContiguousStorageIfAvailable { bytes in
            guard !bytes.contains(where: { $0 >= 0x80 }) else { return false }
            out.append(addingCapacity: bytes.count) { lower in
                for byte in bytes {
                    lower.append((UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte)
                }
            }
            return true
        }
        if ascii != true { out.append(contentsOf: text.lowercased().utf8) }
    }

    /// Appends the canonical URI: the path as given (unencoded bytes), optionally with dot segments
    /// removed and repeated slashes collapsed, then each byte but unreserved characters and `/`
    /// percent-encoded. A path that already holds `%XX` is encoded again, as the SDKs do for every
    /// service but S3.
    static func appendURI(_ path: String, normalize: Bool, to out: inout [UInt8]) {
        if path.isEmpty || path == "/" {
            out.append(UInt8(ascii: "/"))
            return
        }
        if !normalize {
            PercentEncoding.append(path, to: &out, keepingSlash: true)
            return
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
            PercentEncoding.append(segment, to: &out)
        }
        if path.utf8.last == UInt8(ascii: "/"), !segments.isEmpty { out.append(UInt8(ascii: "/")) }
    }

    /// Splits a raw query string into decoded name/value pairs, in order. Empty pieces
    /// (`a=1&&b=2`) are dropped; a piece without `=` has an empty value.
    static func decodeQuery(_ query: String) -> [(name: String, value: String)] {
        var pairs: [(name: String, value: String)] = []
        for piece in query.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            if let equals = piece.firstIndex(of: UInt8(ascii: "=")) {
                pairs.append((String(decoding: PercentEncoding.decode(piece[..<equals]), as: UTF8.self),
                              String(decoding: PercentEncoding.decode(piece[piece.index(after: equals)...]), as: UTF8.self)))
            } else {
                pairs.append((String(decoding: PercentEncoding.decode(piece), as: UTF8.self), ""))
            }
        }
        return pairs
    }

    /// Query parameters percent-encoded once into a single buffer, `name=value` joined by `&` in
    /// the order added, with their positions: the query is the buffer itself, and the canonical
    /// (sorted) query copies runs of parameters that are already in order.
    struct QueryParameters {
        private var bytes: [UInt8] = []
        /// Start, position of `=`, end of each parameter in `bytes`.
        private var spans: [(start: Int, equals: Int, end: Int)] = []

        init(capacity: Int = 512) {
            bytes.reserveCapacity(capacity)
            spans.reserveCapacity(12)
        }

        /// Decoded pairs, encoded the SigV4 way.
        init(_ pairs: [(name: String, value: String)]) {
            self.init()
            for pair in pairs { append(name: pair.name, value: pair.value) }
        }

        /// Bytes of the query: names, values, `=` and `&`.
        var byteCount: Int { bytes.count }

        /// Makes room for `extra` more bytes of parameters at once.
        mutating func reserveCapacity(extra: Int) {
            bytes.reserveCapacity(bytes.count + extra)
        }

        mutating func append(name: some StringProtocol, value: some StringProtocol) {
            appendParameter(name: { PercentEncoding.append(name, to: &$0) }, value: { PercentEncoding.append(value, to: &$0) })
        }

        /// A parameter whose name needs no encoding; `value` writes the encoded value.
        mutating func append(encodedName: StaticString, value: (inout [UInt8]) -> Void) {
            appendParameter(name: {
                $0.append(contentsOf: UnsafeBufferPointer(start: encodedName.utf8Start, count: encodedName.utf8CodeUnitCount))
            }, value: value)
        }

        private mutating func appendParameter(name: (inout [UInt8]) -> Void, value: (inout [UInt8]) -> Void) {
            if !spans.isEmpty { bytes.append(UInt8(ascii: "&")) }
            let start = bytes.count
            name(&bytes)
            let equals = bytes.count
            bytes.append(UInt8(ascii: "="))
            value(&bytes)
            spans.append((start, equals, bytes.count))
        }

        /// Appends `name=value&...` in the order the parameters were added.
        func appendQuery(to out: inout [UInt8]) {
            out.append(contentsOf: bytes)
        }

        /// Appends the canonical query string: sorted by encoded name, then encoded value.
        func appendCanonical(to out: inout [UInt8]) {
            bytes.withUnsafeBufferPointer { buffer in
                func precedes(_ left: Int, _ right: Int) -> Bool {
                    let a = spans[left], b = spans[right]
                    let nameA = UnsafeBufferPointer(rebasing: buffer[a.start..<a.equals])
                    let nameB = UnsafeBufferPointer(rebasing: buffer[b.start..<b.equals])
                    if !nameA.elementsEqual(nameB) { return nameA.lexicographicallyPrecedes(nameB) }
                    return UnsafeBufferPointer(rebasing: buffer[(a.equals + 1)..<a.end])
                        .lexicographicallyPrecedes(UnsafeBufferPointer(rebasing: buffer[(b.equals + 1)..<b.end]))
                }
                withUnsafeTemporaryAllocation(of: Int.self, capacity: spans.count) { order in
                    // Insertion sort: a request has a handful of parameters, often nearly in order.
                    for index in order.indices {
                        order[index] = index
                        var position = index
                        while position > 0, precedes(order[position], order[position - 1]) {
                            order.swapAt(position, position - 1)
                            position -= 1
                        }
                    }
                    // Parameters that follow each other in `bytes` too are copied together, with
                    // the `&` between them.
                    var runStart = 0
                    for runEnd in order.indices where runEnd + 1 == order.count || order[runEnd + 1] != order[runEnd] + 1 {
                        if runStart > 0 { out.append(UInt8(ascii: "&")) }
                        out.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[spans[order[runStart]].start..<spans[order[runEnd]].end]))
                        runStart = runEnd + 1
                    }
                }
            }
        }
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

/// The two time stamps SigV4 uses, `yyyyMMdd'T'HHmmss'Z'` and the credential scope's `yyyyMMdd`,
/// written once per signature without Foundation formatters.
struct AmzDate: Sendable {
    /// Whole days since 1970-01-01: the day of the credential scope.
    let daysSince1970: Int64
    /// `yyyyMMdd'T'HHmmss'Z'` in ASCII; the first 8 bytes are the day.
    private let stampBytes: InlineArray<16, UInt8>

    /// `date` to the second, rounded down.
    init(_ date: Date) {
        self.init(secondsSince1970: Int64(date.timeIntervalSince1970.rounded(.down)))
    }

    /// Formats `secondsSince1970` (UTC) with the civil-from-days algorithm (Howard Hinnant's).
    init(secondsSince1970 seconds: Int64) {
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
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let day = dayOfYear - (153 * mp + 2) / 5 + 1

        var bytes = InlineArray<16, UInt8>(repeating: UInt8(ascii: "0"))
        func put(_ value: Int64, at offset: Int, width: Int) {
            var rest = value
            for position in (offset..<offset + width).reversed() {
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
        stampBytes = bytes
        daysSince1970 = days
    }

    /// Appends `yyyyMMdd'T'HHmmss'Z'`.
    func appendStamp(to out: inout [UInt8]) {
        stampBytes.span.withUnsafeBufferPointer { out.append(contentsOf: $0) }
    }

    /// Appends `yyyyMMdd`.
    func appendDay(to out: inout [UInt8]) {
        stampBytes.span.withUnsafeBufferPointer { out.append(contentsOf: $0.prefix(8)) }
    }

    var stamp: String { text(appendStamp) }
    var day: String { text(appendDay) }

    private func text(_ write: (inout [UInt8]) -> Void) -> String {
        var bytes: [UInt8] = []
        write(&bytes)
        return String(decoding: bytes, as: UTF8.self)
    }
}
