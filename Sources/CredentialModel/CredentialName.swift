/// A credential's name: 1-63 of `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter or digit
/// (`[a-z0-9][a-z0-9._-]{0,62}`). Names label metrics and appear in URL paths, so a value of this
/// type needs no escaping anywhere.
public struct CredentialName: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The name as written.
    public let rawValue: String

    /// The name, or nil when `text` is not a valid one (see ``isValid(_:)``).
    public init?(_ text: some StringProtocol) {
        guard Self.isValid(text) else { return nil }
        rawValue = String(text)
    }

    /// Whether `text` is a valid name, checked on its UTF-8 bytes (no `String` is built).
    /// Inlinable: the server checks every request's name, and a generic call across modules would
    /// not be specialised.
    @inlinable
    public static func isValid(_ text: some StringProtocol) -> Bool {
        let utf8 = text.utf8
        guard let first = utf8.first, utf8.count <= 63 else { return false }
        func alphanumeric(_ byte: UInt8) -> Bool { (0x61...0x7a).contains(byte) || (0x30...0x39).contains(byte) }
        return alphanumeric(first)
            && utf8.dropFirst().allSatisfy { alphanumeric($0) || $0 == 0x2e || $0 == 0x5f || $0 == 0x2d }
    }

    /// What to tell someone who wrote an invalid name.
    public static let rule = "use 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"

    public var description: String { rawValue }

    public static func < (lhs: CredentialName, rhs: CredentialName) -> Bool { lhs.rawValue < rhs.rawValue }
}

extension CredentialName: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let name = CredentialName(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not a credential name: \(Self.rule)")
        }
        self = name
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
