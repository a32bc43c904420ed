/// RFC 3986 percent-encoding, the one codec for URL paths, queries and form bodies: unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`) are kept and every other byte becomes `%XX` in upper-case
/// hex, which is also what AWS Signature Version 4 signs. Works on bytes: SigV4 runs it for every
/// token the agent issues.
public enum PercentEncoding {
    /// Whether `byte` is an RFC 3986 unreserved character, never encoded.
    @inline(__always)
    public static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// `text` encoded; with `keepingSlash`, `/` stays as it is (a path).
    public static func encode(_ text: some StringProtocol, keepingSlash: Bool = false) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + 8)
        append(text, to: &out, keepingSlash: keepingSlash)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends `text`'s UTF-8 to `out`, encoded.
    public static func append(_ text: some StringProtocol, to out: inout [UInt8], keepingSlash: Bool = false) {
        let done: Void? = text.utf8.withContiguousStorageIfAvailable { append($0, to: &out, keepingSlash: keepingSlash) }
        if done == nil {
            Array(text.utf8).withUnsafeBufferPointer { append($0, to: &out, keepingSlash: keepingSlash) }
        }
    }

    /// Appends `bytes` encoded. It fills room reserved at once (`OutputSpan`): appending to an
    /// array byte by byte checks capacity and uniqueness for each byte, which was the bulk of a
    /// token's cost.
    public static func append(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8], keepingSlash: Bool = false) {
        out.append(addingCapacity: 3 * bytes.count) { encoded in
            for byte in bytes {
                if isUnreserved(byte) || (keepingSlash && byte == UInt8(ascii: "/")) {
                    encoded.append(byte)
                } else {
                    encoded.append(UInt8(ascii: "%"))
                    encoded.append(upperHexDigit(byte >> 4))
                    encoded.append(upperHexDigit(byte & 0x0f))
                }
            }
        }
    }

    @inline(__always)
    private static func upperHexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "A") + nibble - 10
    }

    /// Decodes `%XX` escapes (hex of either case); a `%` not followed by two hex digits stays as
    /// it is. With `plusIsSpace` (form bodies and queries of `application/x-www-form-urlencoded`)
    /// `+` is a space, else it stays `+`.
    public static func decode<Bytes: Collection<UInt8>>(_ bytes: Bytes, plusIsSpace: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index != bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                let first = bytes.index(after: index)
                if first != bytes.endIndex {
                    let second = bytes.index(after: first)
                    if second != bytes.endIndex, let high = Encoding.nibble(bytes[first]),
                       let low = Encoding.nibble(bytes[second]) {
                        out.append(high << 4 | low)
                        index = bytes.index(after: second)
                        continue
                    }
                }
            }
            out.append(plusIsSpace && byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
            index = bytes.index(after: index)
        }
        return out
    }

    /// `decode` of `text`'s UTF-8, as a string (invalid UTF-8 repaired).
    public static func decode(_ text: some StringProtocol, plusIsSpace: Bool = false) -> String {
        String(decoding: decode(Array(text.utf8), plusIsSpace: plusIsSpace), as: UTF8.self)
    }
}
