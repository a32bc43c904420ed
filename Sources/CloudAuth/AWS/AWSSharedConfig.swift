import Foundation

/// The shared `~/.aws/credentials` and `~/.aws/config` files: INI sections of `key = value`,
/// `[name]` in the credentials file and `[profile name]` (or `[default]`) in the config file.
struct AWSSharedConfig: Sendable {
    /// Keys by profile name, the credentials file winning over the config file.
    private(set) var profiles: [String: [String: String]] = [:]
    let credentialsPath: String
    let configPath: String

    /// Reads both files; a file that does not exist counts as empty.
    init(environment: [String: String]) throws {
        let home = environment["HOME"] ?? NSHomeDirectory()
        credentialsPath = Self.expand(environment["AWS_SHARED_CREDENTIALS_FILE"] ?? "~/.aws/credentials", home: home)
        configPath = Self.expand(environment["AWS_CONFIG_FILE"] ?? "~/.aws/config", home: home)
        for (name, keys) in try Self.parse(path: configPath, isConfigFile: true) {
            profiles[name, default: [:]].merge(keys) { _, new in new }
        }
        for (name, keys) in try Self.parse(path: credentialsPath, isConfigFile: false) {
            profiles[name, default: [:]].merge(keys) { _, new in new }
        }
    }

    /// Reads both files off the cooperative pool.
    static func read(environment: [String: String]) async throws -> AWSSharedConfig {
        try await BlockingExecutor.shared.run { try AWSSharedConfig(environment: environment) }
    }

    var files: String { "\(credentialsPath) and \(configPath)" }

    private static func expand(_ path: String, home: String) -> String {
        path.hasPrefix("~/") ? home + path.dropFirst() : path
    }

    /// Sections and their keys (lower-cased). Comments start with `#` or `;`; indented lines
    /// (sub-sections such as `s3 =`) are skipped.
    static func parse(path: String, isConfigFile: Bool) throws -> [String: [String: String]] {
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CloudAuthError(.io, source: path, "the file cannot be read",
                                 remedy: "check its permissions, or point AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE elsewhere")
        }
        var sections: [String: [String: String]] = [:]
        var current: String?
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            if rawLine.first == " " || rawLine.first == "\t" { continue }
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else {
                    throw CloudAuthError(.invalidInput, source: "\(path):\(index + 1)", "the section header is not closed with ]")
                }
                var name = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                if isConfigFile {
                    if name.hasPrefix("profile ") {
                        name = name.dropFirst("profile ".count).trimmingCharacters(in: .whitespaces)
                    } else if name != "default" {
                        current = nil  // [sso-session x], [services x]: not profiles
                        continue
                    }
                }
                current = name
                sections[name, default: [:]] = sections[name] ?? [:]
                continue
            }
            guard let current else { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw CloudAuthError(.invalidInput, source: "\(path):\(index + 1)", "expected key = value")
            }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            sections[current]?[key] = value
        }
        return sections
    }
}
