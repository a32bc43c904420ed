import CloudAuth
import CredentialModel
import Foundation
import Logging

/// Writes one line per log event to stderr (through ``LogWriter``), as logfmt (`ts=... level=info msg="..." key=value`)
/// or as a JSON object. Metadata keys are dot-separated; values are whatever the caller put in,
/// so callers never put secrets there (``CloudAuth/Secret`` prints `<redacted>` anyway).
///
/// Lines at `notice` and above (the agent's lifecycle: listening, config reloaded, stopping; and
/// errors) are never dropped when a slow reader lets the queue fill; lines below may be.
public struct AgentLogHandler: LogHandler {
    /// How lines are formatted.
    public enum Format: String, Sendable, CaseIterable {
        case logfmt, json
    }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let format: Format
    private let output: Output

    /// Where a formatted line goes, with the level of its event.
    public typealias Output = @Sendable (_ line: String, _ level: Logger.Level) -> Void

    public init(label: String, format: Format, level: Logger.Level,
                output: @escaping Output = AgentLogHandler.writeToStandardError) {
        self.label = label
        self.format = format
        self.logLevel = level
        self.output = output
    }

    /// Queues the line for standard error's writer thread (see ``LogWriter``): never blocks;
    /// lines at `notice` and above are kept even when the queue is full.
    public static func writeToStandardError(_ line: String, level: Logger.Level) {
        LogWriter.standardError.enqueue(line, neverDrop: level >= .notice)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let time = Timestamp.formatMilliseconds(Date())
        switch format {
        case .logfmt:
            var line = "ts=\(time) level=\(event.level.rawValue) msg=\(Self.logfmtValue(event.message.description))"
            for key in merged.keys.sorted() {
                line += " \(key)=\(Self.logfmtValue(Self.flatten(merged[key]!)))"
            }
            output(line, event.level)
        case .json:
            var fields: [(String, JSONValue)] = [("ts", .string(time)), ("level", .string(event.level.rawValue)),
                                                 ("msg", .string(event.message.description))]
            for key in merged.keys.sorted() { fields.append((key, .string(Self.flatten(merged[key]!)))) }
            output(String(decoding: JSONValue.object(fields).bytes, as: UTF8.self), event.level)
        }
    }

    private static func flatten(_ value: Logger.MetadataValue) -> String {
        switch value {
        case let .string(text): text
        case let .stringConvertible(convertible): convertible.description
        case let .array(items): "[" + items.map(flatten).joined(separator: ",") + "]"
        case let .dictionary(entries): "{" + entries.keys.sorted().map { "\($0)=\(flatten(entries[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    /// A bare word when safe, else a double-quoted string with `"` and `\` escaped and every
    /// control or line-breaking character written as an escape (`\n`, `\r`, `\t`, `\u2028`), so a
    /// line stays one line. Read by Unicode scalars: a CR LF pair is one `Character`, equal to
    /// neither "\r" nor "\n".
    static func logfmtValue(_ text: String) -> String {
        guard text.isEmpty || text.unicodeScalars.contains(where: needsQuotes) else { return text }
        var escaped = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where isControl(scalar):
                let hex = String(scalar.value, radix: 16)
                escaped += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped + "\""
    }

    private static func needsQuotes(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case " ", "=", "\"", "\\": true
        default: isControl(scalar)
        }
    }

    /// C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029
    }

}
