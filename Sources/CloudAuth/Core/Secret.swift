/// A secret value (token, password, key) that never prints itself.
///
/// `description`, `debugDescription` and the mirror all show `<redacted>`, so a secret that ends up
/// in a log line, an error message or a `dump` leaks nothing. Read the value with ``reveal()`` at
/// the single place it is needed.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    private let value: String

    public init(_ value: String) { self.value = value }

    /// The secret itself. Call it only where the value leaves the process on purpose.
    public func reveal() -> String { value }

    public var isEmpty: Bool { value.isEmpty }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
