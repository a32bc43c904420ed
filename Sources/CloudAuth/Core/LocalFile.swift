import Foundation

/// Reads small local files (token files, key files, shared config) off the cooperative thread
/// pool: file I/O blocks, and a slow or hung volume must not stall the agent's tasks.
public enum LocalFile {
    /// The whole file at `path`.
    public static func read(_ path: String) async throws -> Data {
        try await BlockingExecutor.shared.run { try Data(contentsOf: URL(fileURLWithPath: path)) }
    }

    /// The file at `path` as UTF-8 text with surrounding whitespace removed (token files).
    public static func readTrimmedText(_ path: String) async throws -> String {
        String(decoding: try await read(path), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
