/// One problem in a config file: the key path it is at and what is wrong, e.g.
/// `credentials[2].port: 70000 is not a port (1-65535)`, or for a value with environment
/// references `credentials[2].port (from ${PG_PORT}): 70000 is not a port (1-65535)`.
public struct ConfigIssue: Sendable, Equatable, CustomStringConvertible {
    /// Dotted key path (`socket.mode`, `credentials[0].host`); empty for the file as a whole.
    public var path: String
    public var message: String
    /// The value as written in the file when it held environment references (`${PG_PORT}`) and
    /// the message is about what they expanded to; nil otherwise.
    public var expandedFrom: String?

    public init(path: String, message: String, expandedFrom: String? = nil) {
        self.path = path
        self.message = message
        self.expandedFrom = expandedFrom
    }

    public var description: String {
        let origin = expandedFrom.map { " (from \($0))" } ?? ""
        return path.isEmpty ? message : "\(path)\(origin): \(message)"
    }
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
