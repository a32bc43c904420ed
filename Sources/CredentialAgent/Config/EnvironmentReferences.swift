/// `${NAME}` and `${NAME:-default}` references in config values, expanded from an environment.
///
/// The syntax is the POSIX shell's subset: `${NAME}` is the variable's value (empty when it is
/// set but empty), `${NAME:-default}` is the default when the variable is unset or empty, and `$$`
/// is a literal `$`. NAME matches `[A-Za-z_][A-Za-z0-9_]*`; the default is literal text up to the
/// first `}` and may not contain `$`. Any other `$` is an error rather than literal text, so a
/// `$HOME` written by habit is reported instead of kept as it is.
enum EnvironmentReferences {
    /// The text with every reference replaced, or one message per problem: each unset variable
    /// without a default, or the first malformed reference (scanning stops there).
    static func expand(_ text: String, environment: [String: String]) -> Result<String, Problems> {
        var result = ""
        var problems: [String] = []
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            result += rest[..<dollar]
            let afterDollar = rest.index(after: dollar)
            if afterDollar < rest.endIndex, rest[afterDollar] == "$" {
                result += "$"
                rest = rest[rest.index(after: afterDollar)...]
                continue
            }
            guard afterDollar < rest.endIndex, rest[afterDollar] == "{" else {
                problems.append("'\(text)' has a '$' that does not start a reference: write ${NAME}, or $$ for a literal '$'")
                return .failure(Problems(messages: problems))
            }
            guard let close = rest[afterDollar...].firstIndex(of: "}") else {
                problems.append("'\(text)' has a '${' without its closing '}': write ${NAME}, or $$ for a literal '$'")
                return .failure(Problems(messages: problems))
            }
            let reference = rest[dollar...close]
            guard let parsed = Reference(body: rest[rest.index(after: afterDollar)..<close]) else {
                problems.append("'\(reference)' is not a reference: write ${NAME} or ${NAME:-default}, NAME of letters, digits and '_' not starting with a digit, and no '$' in the default")
                return .failure(Problems(messages: problems))
            }
            if let value = environment[String(parsed.name)], !(value.isEmpty && parsed.fallback != nil) {
                result += value
            } else if let fallback = parsed.fallback {
                result += fallback
            } else {
                problems.append("${\(parsed.name)} is not set; set it, or give a default: ${\(parsed.name):-value}")
            }
            rest = rest[rest.index(after: close)...]
        }
        result += rest
        return problems.isEmpty ? .success(result) : .failure(Problems(messages: problems))
    }

    /// Why a value could not be expanded, one sentence per problem.
    struct Problems: Error, Equatable {
        var messages: [String]
    }

    /// The inside of `${...}`: a name and, after `:-`, an optional default.
    private struct Reference {
        var name: Substring
        var fallback: Substring?

        init?(body: Substring) {
            if let colon = body.firstIndex(of: ":") {
                let operation = body[body.index(after: colon)...]
                guard operation.first == "-" else { return nil }
                name = body[..<colon]
                fallback = operation.dropFirst()
            } else {
                name = body
                fallback = nil
            }
            guard Self.isValidName(name), fallback?.contains("$") != true else { return nil }
        }

        /// `[A-Za-z_][A-Za-z0-9_]*`
        static func isValidName(_ name: Substring) -> Bool {
            func letter(_ byte: UInt8) -> Bool { (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte) || byte == 0x5f }
            guard let first = name.utf8.first, letter(first) else { return false }
            return name.utf8.allSatisfy { letter($0) || (0x30...0x39).contains($0) }
        }
    }
}
