import Foundation
import NIOCore

/// Masks a token in a streamed response body: every occurrence becomes as many `*`, so lengths
/// (and a `Content-Length`) stay right. Vault echoes the caller's token in some answers
/// (`auth/token/lookup-self` has it as `id`); the proxy's clients never see the agent's token.
///
/// A chunk's end that could be the start of the token is held back until the next chunk (at most
/// the token's length less one byte), and given out by ``finish()``.
struct TokenRedactor: CustomReflectable {
    private let token: [UInt8]
    private var held = ByteBuffer()

    init(token: String) {
        self.token = Array(token.utf8)
    }

    /// The bytes of `chunk` (after those held back before) that can be sent now, the token masked.
    mutating func redact(_ chunk: ByteBuffer) -> ByteBuffer {
        guard !token.isEmpty else { return chunk }
        var buffer: ByteBuffer
        if held.readableBytes == 0 {
            buffer = chunk
        } else {
            buffer = held
            var chunk = chunk
            buffer.writeBuffer(&chunk)
            held.clear()
        }
        let (matches, keep) = buffer.withUnsafeReadableBytes { bytes in (occurrences(in: bytes), heldSuffix(of: bytes)) }
        for start in matches {
            buffer.setRepeatingByte(UInt8(ascii: "*"), count: token.count, at: buffer.readerIndex + start)
        }
        if keep > 0, let tail = buffer.getSlice(at: buffer.writerIndex - keep, length: keep) {
            held = tail
            buffer.moveWriterIndex(to: buffer.writerIndex - keep)
        }
        return buffer
    }

    /// What was held back at the end of the body (not the token, or it would have been masked).
    mutating func finish() -> ByteBuffer {
        defer { held = ByteBuffer() }
        return held
    }

    /// Shows nothing of the token (as `Secret` does), should a redactor ever be dumped.
    var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }

    /// Offsets where the token starts, not overlapping.
    private func occurrences(in bytes: UnsafeRawBufferPointer) -> [Int] {
        var found: [Int] = []
        guard bytes.count >= token.count, let first = token.first else { return found }
        var index = 0
        while index <= bytes.count - token.count {
            if bytes[index] == first, token.withUnsafeBytes({ memcmp($0.baseAddress!, bytes.baseAddress! + index, token.count) == 0 }) {
                found.append(index)
                index += token.count
            } else {
                index += 1
            }
        }
        return found
    }

    /// The length of the longest end of `bytes`, shorter than the token, that the token starts with.
    private func heldSuffix(of bytes: UnsafeRawBufferPointer) -> Int {
        var length = min(token.count - 1, bytes.count)
        while length > 0 {
            let start = bytes.count - length
            if token.withUnsafeBytes({ memcmp($0.baseAddress!, bytes.baseAddress! + start, length) == 0 }) { return length }
            length -= 1
        }
        return 0
    }
}
