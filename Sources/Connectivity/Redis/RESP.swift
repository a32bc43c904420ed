internal import CHiredis
import Foundation

/// A Redis (RESP2) reply.
enum RedisReply: Equatable {
    case status(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8])
    case null
    case array([RedisReply])

    /// The text of a status or bulk reply.
    var text: String? {
        switch self {
        case .status(let text): return text
        case .bulk(let bytes): return String(decoding: bytes, as: UTF8.self)
        default: return nil
        }
    }
}

/// Redis commands in the wire format, built by hiredis from separate arguments: no argument can
/// change the command's shape, whatever bytes it holds.
enum RedisCommand {
    static func encode(_ arguments: [String]) -> [UInt8] {
        let copies = arguments.map { strdup($0) }
        defer {
            // Arguments may hold a password: wipe the copies before freeing them.
            copies.forEach { copy in
                if let copy { memset(copy, 0, strlen(copy)) }
                free(copy)
            }
        }
        let lengths = arguments.map { $0.utf8.count }
        var pointers = copies.map { UnsafePointer($0) }
        var target: UnsafeMutablePointer<CChar>?
        let length = redisFormatCommandArgv(&target, Int32(arguments.count), &pointers, lengths)
        guard length > 0, let target else { return [] }
        defer {
            memset(target, 0, Int(length))
            redisFreeCommand(target)
        }
        return Array(UnsafeRawBufferPointer(start: target, count: Int(length)))
    }
}

/// hiredis' incremental reply parser (`redisReader`), freed when the object goes away.
final class RedisReplyReader {
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        guard let reader = redisReaderCreate() else { fatalError("hiredis could not allocate a reader (out of memory)") }
        self.reader = reader
    }

    deinit { redisReaderFree(reader) }

    /// Adds bytes received from the server.
    func feed(_ bytes: UnsafeRawBufferPointer) throws(ProbeFailure) {
        guard !bytes.isEmpty else { return }
        let status = bytes.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) }
        if status != REDIS_OK { throw protocolFailure() }
    }

    /// The next complete reply, or nil when more bytes are needed.
    func next() throws(ProbeFailure) -> RedisReply? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else { throw protocolFailure() }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self).pointee)
    }

    private func protocolFailure() -> ProbeFailure {
        let message = withUnsafeBytes(of: reader.pointee.errstr) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return ProbeFailure(.protocolError, "the answer is not valid Redis protocol (\(message))",
                            remedy: "check that the port serves Redis, and whether it expects TLS")
    }

    private static func convert(_ reply: redisReply) -> RedisReply {
        func text() -> String { String(decoding: bytes(), as: UTF8.self) }
        func bytes() -> [UInt8] {
            guard let string = reply.str else { return [] }
            return Array(UnsafeRawBufferPointer(start: string, count: reply.len))
        }
        switch reply.type {
        case REDIS_REPLY_STATUS: return .status(text())
        case REDIS_REPLY_ERROR: return .error(text())
        case REDIS_REPLY_INTEGER: return .integer(reply.integer)
        case REDIS_REPLY_STRING: return .bulk(bytes())
        case REDIS_REPLY_ARRAY:
            return .array((0..<reply.elements).map { convert(reply.element[$0]!.pointee) })
        default: return .null
        }
    }
}
