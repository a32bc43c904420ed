import CloudAuth
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Masks tokens in a streamed response body: every occurrence of one becomes as many `*`, so
/// lengths (and a `Content-Length`) stay right. Vault echoes the caller's token in some answers
/// (`auth/token/lookup-self` has it as `id`); the proxy's clients never see the agent's token,
/// nor one the proxy used before it (see ``SentTokens``).
///
/// A chunk's end that could be the start of a token is held back until the next chunk (at most
/// the longest token's length less one byte), and given out by ``finish()``.
struct TokenRedactor: CustomReflectable {
    /// The tokens, longest first (so that a token that begins another is not masked in its place).
    private let tokens: [[UInt8]]
    /// `startsToken[b]`: some token begins with the byte `b`.
    private let startsToken: [Bool]
    private var held = ByteBuffer()

    init(masking tokens: [Secret]) {
        self.tokens = tokens.map { Array($0.reveal().utf8) }.filter { !$0.isEmpty }.sorted { $0.count > $1.count }
        var startsToken = [Bool](repeating: false, count: 256)
        for token in self.tokens { startsToken[Int(token[0])] = true }
        self.startsToken = startsToken
    }

    /// The bytes of `chunk` (after those held back before) that can be sent now, the tokens masked.
    mutating func redact(_ chunk: ByteBuffer) -> ByteBuffer {
        guard !tokens.isEmpty else { return chunk }
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
        for (start, length) in matches {
            buffer.setRepeatingByte(UInt8(ascii: "*"), count: length, at: buffer.readerIndex + start)
        }
        if keep > 0, let tail = buffer.getSlice(at: buffer.writerIndex - keep, length: keep) {
            held = tail
            buffer.moveWriterIndex(to: buffer.writerIndex - keep)
        }
        return buffer
    }

    /// What was held back at the end of the body (no token, or it would have been masked).
    mutating func finish() -> ByteBuffer {
        defer { held = ByteBuffer() }
        return held
    }

    /// Shows nothing of the tokens (as `Secret` does), should a redactor ever be dumped.
    var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }

    /// Where tokens start and how long each is, not overlapping.
    private func occurrences(in bytes: UnsafeRawBufferPointer) -> [(start: Int, length: Int)] {
        var found: [(start: Int, length: Int)] = []
        var index = 0
        while index < bytes.count {
            if startsToken[Int(bytes[index])], let token = tokens.first(where: { starts(bytes, at: index, with: $0[...]) }) {
                found.append((index, token.count))
                index += token.count
            } else {
                index += 1
            }
        }
        return found
    }

    /// The length of the longest end of `bytes`, shorter than a token, that the token starts with.
    private func heldSuffix(of bytes: UnsafeRawBufferPointer) -> Int {
        var length = min((tokens.first?.count ?? 1) - 1, bytes.count)
        while length > 0 {
            let start = bytes.count - length
            if startsToken[Int(bytes[start])], tokens.contains(where: { $0.count > length && starts(bytes, at: start, with: $0.prefix(length)) }) {
                return length
            }
            length -= 1
        }
        return 0
    }

    /// Whether `bytes` holds `prefix` from `index` on.
    private func starts(_ bytes: UnsafeRawBufferPointer, at index: Int, with prefix: ArraySlice<UInt8>) -> Bool {
        guard bytes.count - index >= prefix.count else { return false }
        return prefix.withUnsafeBytes { memcmp($0.baseAddress!, bytes.baseAddress! + index, prefix.count) == 0 }
    }
}

/// The tokens a Vault proxy has sent to Vault, whose answers it masks: the current one and the
/// last ``kept`` before it. A token the agent replaced by a fresh login stays valid until it
/// expires, and an answer may still hold it: a lookup wrapped before the rotation and unwrapped
/// after. Shared by all of the proxy's sessions.
final class SentTokens: Sendable {
    /// Tokens kept besides the current one.
    static let kept = 8

    private struct State {
        /// Newest first.
        var tokens: [Secret] = []
        var redactor = TokenRedactor(masking: [])
    }

    private let state = NIOLockedValueBox(State())

    /// Notes `token` as the one being sent now, and returns it.
    func record(_ token: Secret) -> Secret {
        state.withLockedValue { state in
            guard state.tokens.first != token else { return }
            state.tokens.removeAll { $0 == token }
            state.tokens.insert(token, at: 0)
            state.tokens.removeLast(max(0, state.tokens.count - 1 - Self.kept))
            state.redactor = TokenRedactor(masking: state.tokens)
        }
        return token
    }

    /// A redactor for the answer to a request sent with `token`: it masks the tokens sent, and
    /// `token` among them.
    func redactor(for token: Secret) -> TokenRedactor {
        state.withLockedValue { state in
            state.tokens.contains(token) ? state.redactor : TokenRedactor(masking: state.tokens + [token])
        }
    }
}
