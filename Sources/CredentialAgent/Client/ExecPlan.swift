import CredentialModel
import Foundation

/// What `credagent exec` is asked to do, parsed and checked before anything runs: which
/// variables take which credential fields, and what a rotation does to the command.
public struct ExecPlan: Sendable, Equatable {
    /// `VAR=NAME.FIELD`: the variable `variable` holds `field` of the credential `credential`.
    public struct Binding: Sendable, Equatable {
        public var variable: String
        public var credential: String
        public var field: String
    }

    /// What a new version of a credential does to the running command.
    public enum RotationPolicy: Sendable, Equatable {
        /// Nothing: the command keeps the values it started with.
        case none
        /// The command is stopped (SIGTERM) and started again with the new values.
        case restart
        /// The command is sent this signal (written `name`, e.g. `HUP`).
        case signal(number: Int32, name: String)
    }

    public var bindings: [Binding]
    public var policy: RotationPolicy

    /// A usage error; the message says what to write instead.
    public struct UsageError: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Parses `--env` values and the `--on-rotation` value.
    public init(environment: [String], onRotation: String) throws(UsageError) {
        bindings = try environment.map { text throws(UsageError) in try Self.binding(text) }
        if bindings.isEmpty {
            throw UsageError(message: "give at least one --env VAR=NAME.FIELD, e.g. --env PGPASSWORD=orders-db.password")
        }
        var seen = Set<String>()
        for binding in bindings where !seen.insert(binding.variable).inserted {
            throw UsageError(message: "--env \(binding.variable) is given twice; give each variable once")
        }
        policy = try Self.policy(onRotation)
    }

    /// The credentials the bindings name, each once, in order.
    public var credentials: [String] {
        var seen = Set<String>()
        return bindings.map(\.credential).filter { seen.insert($0).inserted }
    }

    /// The variables for the credentials' current `fields` (by credential name). A field the
    /// credential's kind does not have is an error; a null one gives an empty variable.
    public func variables(_ fields: [String: CredentialFields]) throws(UsageError) -> [String: String] {
        var variables: [String: String] = [:]
        for binding in bindings {
            guard let credential = fields[binding.credential] else { continue }
            guard case let value? = credential.value(of: binding.field) else {
                let kind = credential.kind ?? "unknown"
                let known = CredentialKind(rawValue: kind).map { (CredentialFields.commonFields + CredentialFields.fields(of: $0)).joined(separator: ", ") } ?? ""
                throw UsageError(message: "--env \(binding.variable)=\(binding.credential).\(binding.field): \(binding.credential) is a \(kind) credential without a field \(binding.field) (its fields: \(known))")
            }
            variables[binding.variable] = value ?? ""
        }
        return variables
    }

    private static func binding(_ text: String) throws(UsageError) -> Binding {
        let usage = "write --env VAR=NAME.FIELD, e.g. --env PGPASSWORD=orders-db.password"
        guard let equals = text.firstIndex(of: "=") else { throw UsageError(message: "--env '\(text)' has no '='; \(usage)") }
        let variable = String(text[..<equals]), reference = String(text[text.index(after: equals)...])
        guard let first = variable.utf8.first, !(0x30...0x39).contains(first),
              variable.utf8.allSatisfy({ (0x41...0x5a).contains($0) || (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5f })
        else {
            throw UsageError(message: "--env '\(text)': '\(variable)' is not a variable name (letters, digits and '_', not starting with a digit)")
        }
        // Names may hold dots, fields too (`connection.host`): the field is the last part, or
        // the last two when they are `connection.FIELD`.
        var parts = reference.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2 else { throw UsageError(message: "--env '\(text)' names no field; \(usage)") }
        var field = parts.removeLast()
        if parts.count >= 2, parts.last == "connection" {
            field = "connection." + field
            parts.removeLast()
        }
        let credential = parts.joined(separator: ".")
        guard CredentialName.isValid(credential) else {
            throw UsageError(message: "--env '\(text)': '\(credential)' is not a credential name ([a-z0-9][a-z0-9._-]{0,62})")
        }
        guard CredentialFields.isField(field) else {
            throw UsageError(message: "--env '\(text)': '\(field)' is not a credential field (fields: \(CredentialFields.allFieldNames.joined(separator: ", ")), or connection.FIELD)")
        }
        return Binding(variable: variable, credential: credential, field: field)
    }

    private static func policy(_ text: String) throws(UsageError) -> RotationPolicy {
        switch text {
        case "none": return .none
        case "restart": return .restart
        default:
            if text.hasPrefix("signal:"), let signal = RotationHook.signal(named: String(text.dropFirst("signal:".count))) {
                return .signal(number: signal.number, name: signal.name)
            }
            let names = RotationHook.signals.map(\.name).joined(separator: ", ")
            throw UsageError(message: "--on-rotation '\(text)' is not restart, none or signal:NAME (NAME one of \(names))")
        }
    }
}
