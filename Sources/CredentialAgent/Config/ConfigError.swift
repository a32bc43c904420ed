/// One problem in a config file: the key path it is at and what is wrong, e.g.
/// `credentials[2].port: 70000 is not a port (1-65535)`.
public struct ConfigIssue: Sendable, Equatable, CustomStringConvertible {
    /// Dotted key path (`socket.mode`, `credentials[0].host`); empty for the file as a whole.
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// A config file that cannot be used, with every problem found in it.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file (or other origin) the config came from.
    public var file: String
    public var issues: [ConfigIssue]

    public init(file: String, issues: [ConfigIssue]) {
        self.file = file
        self.issues = issues
    }

    public var description: String {
        let noun = issues.count == 1 ? "problem" : "problems"
        return "\(file): \(issues.count) \(noun):\n" + issues.map { "  \($0)" }.joined(separator: "\n")
    }
}
