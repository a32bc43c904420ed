/// What of an upstream service's error answer may appear in our errors, and so in logs, the
/// agent's listing and its 503 answers, which other local users may read: the service's
/// documented error code when it has the shape of one, and a masked, bounded excerpt of its
/// message. Never the raw body: a service (or a proxy in front of it) may echo what it was sent,
/// signed requests, keys and tokens included.
public enum UpstreamText {
    /// The longest excerpt kept, in characters, before "...".
    public static let excerptLimit = 120

    /// `text` if it has the shape of a documented error code (`AccessDenied`, `invalid_grant`,
    /// `PERMISSION_DENIED`, `AADSTS70021`): a letter, then letters, digits and `_`, at most 64
    /// characters with at most 8 digits. Anything else (a token, a sentence) is nil.
    public static func code(_ text: String?) -> String? {
        guard let text, (1...64).contains(text.count), let first = text.unicodeScalars.first,
              ("A"..."Z").contains(first) || ("a"..."z").contains(first) else { return nil }
        var digits = 0
        for scalar in text.unicodeScalars {
            if ("0"..."9").contains(scalar) { digits += 1; continue }
            guard ("A"..."Z").contains(scalar) || ("a"..."z").contains(scalar) || scalar == "_" else { return nil }
        }
        return digits <= 8 ? text : nil
    }

    /// `text` on one line, with PEM blocks, values of secret-looking fields (`SecretAccessKey=`,
    /// `X-Amz-Signature=`, `"token": ...`, `<SecretAccessKey>...`) and anything shaped like a key or token (a run of 24 or
    /// more token characters, or of 12 or more mixing letters and digits) replaced by
    /// `<redacted>`, then cut to ``excerptLimit`` characters.
    public static func excerpt(_ text: String) -> String {
        var masked = text.replacing(#/-----BEGIN[^-]*-----(?s:.*?)(-----END[^-]*-----|$)/#, with: "<redacted>")
        masked = masked.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        masked = masked.replacing(secretField) { match in "\(match.output.1)\(match.output.2)<redacted>" }
        masked = masked.replacing(secretElement) { match in "\(match.output.1)<redacted>" }
        masked = masked.replacing(tokenShaped) { match in
            let run = match.output
            let hasDigit = run.contains { $0.isASCII && $0.isNumber }
            let hasLetter = run.contains { $0.isASCII && $0.isLetter }
            return run.count >= 24 || (run.count >= 12 && hasDigit && hasLetter) ? "<redacted>" : String(run)
        }
        guard masked.count > excerptLimit else { return masked }
        return masked.prefix(excerptLimit) + "..."
    }

    /// `name=value`, `name: value`, `"name": "value"` where the name speaks of a secret; the
    /// value ends at a space, `&`, `,`, `;`, a quote or a closing bracket.
    nonisolated(unsafe) private static let secretField =
        #/(?i)([A-Za-z0-9_.\-]*(?:secret|token|password|passwd|signature|credential|key|authorization|assertion|session)[A-Za-z0-9_.\-]*"?)(\s*[=:]\s*"?)[^\s&,;"'<>)\]}]+/#

    /// `<SecretAccessKey>value` in XML.
    nonisolated(unsafe) private static let secretElement =
        #/(?i)(<[A-Za-z0-9_:\-]*(?:secret|token|password|signature|credential|key|assertion)[A-Za-z0-9_:\-]*>)[^<]+/#

    /// A run of characters that keys, tokens, signatures and JWTs are made of.
    nonisolated(unsafe) private static let tokenShaped = #/[A-Za-z0-9+\/=_.\-~%]+/#
}
