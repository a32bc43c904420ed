import Foundation

/// The fields of a credential's JSON answer (docs/API.md) by name, as sink templates and
/// `credagent exec` name them: top-level fields (`username`, `password`, `token`, `version`...)
/// and the fields of `connection`, both bare (`host`) and dotted (`connection.host`).
///
/// Values are the JSON's scalars as text: strings as they are, numbers in decimal, booleans as
/// `true`/`false`; a JSON null is a field without a value. The values include the secret, so the
/// type describes itself without them.
public struct CredentialFields: Sendable, CustomStringConvertible {
    /// The credential's `kind` as the JSON gives it.
    public let kind: String?
    private let values: [String: String?]

    /// Fields every credential has.
    public static let commonFields = ["name", "kind", "provider", "version", "issued_at", "expires_at", "refresh_at"]

    /// The fields a credential of `kind` has, in the order of its JSON answer; the optional
    /// ones (`ca_file`, `tls_server_name`, a null `username` or `database`) may lack a value.
    public static func fields(of kind: CredentialKind) -> [String] {
        switch kind {
        case .postgres: ["username", "password", "host", "port", "database", "sslmode", "ca_file"]
        case .redis: ["username", "password", "host", "port", "tls", "ca_file"]
        case .vault: ["token", "accessor", "renewable", "lease_duration", "address", "namespace", "ca_file", "tls_server_name"]
        }
    }

    /// The fields of `connection`, which may also be named `connection.FIELD`.
    static let connectionFields: Set<String> = ["host", "port", "database", "sslmode", "tls", "address", "namespace",
                                                "ca_file", "tls_server_name"]

    /// Whether a credential of `kind` has `field` (bare or as `connection.FIELD`).
    public static func isField(_ field: String, of kind: CredentialKind) -> Bool {
        let known = commonFields + fields(of: kind)
        if field.hasPrefix("connection.") {
            let bare = String(field.dropFirst("connection.".count))
            return connectionFields.contains(bare) && known.contains(bare)
        }
        return known.contains(field)
    }

    /// Whether a credential of any kind has `field`.
    public static func isField(_ field: String) -> Bool {
        CredentialKind.allCases.contains { isField(field, of: $0) }
    }

    /// Every field name of every kind, bare, for messages.
    public static var allFieldNames: [String] {
        var seen = Set<String>()
        return (commonFields + CredentialKind.allCases.flatMap { fields(of: $0) }).filter { seen.insert($0).inserted }
    }

    /// The fields of a credential's JSON answer. Throws when `json` is not a JSON object.
    public init(json: [UInt8]) throws {
        let object = try JSONDecoder().decode([String: ScalarOrObject].self, from: Data(json))
        var values: [String: String?] = [:]
        for (key, value) in object {
            switch value {
            case let .scalar(text): values[key] = text
            case let .object(fields):
                for (inner, text) in fields {
                    values["\(key).\(inner)"] = text
                    if key == "connection", object[inner] == nil { values[inner] = text }
                }
            }
        }
        self.values = values
        if case let .scalar(kind)? = object["kind"] { self.kind = kind } else { self.kind = nil }
    }

    /// The value of `field`: nil when the credential has no such field, `.some(nil)` when the
    /// JSON holds null for it.
    public func value(of field: String) -> String?? {
        values[field]
    }

    /// The value of `field`, empty when null or absent.
    public func text(of field: String) -> String {
        (values[field] ?? nil) ?? ""
    }

    public var description: String { "<fields of a \(kind ?? "") credential>" }

    /// A top-level value of the answer: a scalar as text (nil for null), or an object of scalars.
    private enum ScalarOrObject: Decodable {
        case scalar(String?)
        case object([String: String?])

        init(from decoder: any Decoder) throws {
            let single = try decoder.singleValueContainer()
            if single.decodeNil() {
                self = .scalar(nil)
                return
            }
            if let text = try? Self.scalar(single) {
                self = .scalar(text)
                return
            }
            let container = try decoder.container(keyedBy: AnyKey.self)
            var fields: [String: String?] = [:]
            for key in container.allKeys {
                fields[key.stringValue] = try Self.scalar(container.superDecoder(forKey: key).singleValueContainer())
            }
            self = .object(fields)
        }

        private static func scalar(_ container: any SingleValueDecodingContainer) throws -> String? {
            if container.decodeNil() { return nil }
            if let flag = try? container.decode(Bool.self) { return flag ? "true" : "false" }
            if let number = try? container.decode(Int.self) { return String(number) }
            if let number = try? container.decode(Double.self) { return String(number) }
            return try container.decode(String.self)
        }
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
