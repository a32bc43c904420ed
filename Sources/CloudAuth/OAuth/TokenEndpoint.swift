import Foundation

/// Reading fields of the JSON that token endpoints send, whose numbers may arrive as strings
/// (Azure's `expires_on: "1506484173"`) or as numbers (Google's `expires_in: 3599`).
public enum JSONFields {
    /// A number from a JSON number or a numeric string; nil otherwise.
    public static func number(_ value: Any?) -> Double? {
        switch value {
        case let number as NSNumber: return number.doubleValue
        case let int as Int: return Double(int)
        case let double as Double: return double
        case let text as String: return Double(text.trimmingCharacters(in: .whitespaces))
        default: return nil
        }
    }

    /// The top-level object of a JSON document, or nil when `bytes` are not a JSON object.
    public static func object(_ bytes: [UInt8]) -> [String: any Sendable]? {
        guard let value = try? JSONSerialization.jsonObject(with: Data(bytes)),
              let object = value as? [String: Any] else { return nil }
        return JWT.sendable(object)
    }
}

/// `application/x-www-form-urlencoded` bodies and URL queries, percent-encoded with
/// ``PercentEncoding``.
public enum FormEncoding {
    /// `name=value&...` with both sides encoded, in the order given.
    public static func encode(_ fields: [(String, String)]) -> String {
        fields.map { "\(PercentEncoding.encode($0.0))=\(PercentEncoding.encode($0.1))" }.joined(separator: "&")
    }

    /// Parses `name=value&...`, decoding `+` and percent escapes; later duplicates are kept.
    public static func decode(_ text: String) -> [(name: String, value: String)] {
        text.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (PercentEncoding.decode(parts[0], plusIsSpace: true),
                    parts.count > 1 ? PercentEncoding.decode(parts[1], plusIsSpace: true) : "")
        }
    }
}

/// What clients of OAuth-style token endpoints (Azure IMDS and Entra, Google's metadata server
/// and token endpoint) share: turning a failed answer into a precise error and a token answer into
/// an ``AccessToken``.
enum TokenEndpoint {
    /// The error for a non-2xx answer: the status, and the endpoint's `error` code and a masked
    /// excerpt of its `error_description` when it sent an OAuth error body (otherwise a masked
    /// excerpt of the body; see ``UpstreamText``).
    static func failure(_ response: HTTPResponse, source: String, remedy: String? = nil) -> CloudAuthError {
        let code: CloudAuthError.Code = response.status == 429 || response.status >= 500 ? .unavailable : .rejected
        return CloudAuthError(code, source: source, "answered HTTP \(response.status)\(describeError(response))",
                              remedy: remedy)
    }

    /// `: error: description` from an OAuth error body (Google's `{"error": {"status", "message"}}`
    /// too), or `: excerpt` of any other body. The error code only when it has the shape of one;
    /// description and excerpt masked and bounded.
    static func describeError(_ response: HTTPResponse) -> String {
        if let object = JSONFields.object(response.body) {
            let nested = object["error"] as? [String: any Sendable]
            let error = UpstreamText.code(object["error"] as? String ?? nested?["status"] as? String)
            let description = (object["error_description"] as? String ?? nested?["message"] as? String).map(UpstreamText.excerpt)
            switch (error, description) {
            case let (error?, description?): return ": \(error): \(description)"
            case let (error?, nil): return ": \(error)"
            case let (nil, description?): return ": \(description)"
            default: break
            }
        }
        let text = UpstreamText.excerpt(response.bodyText)
        return text.isEmpty ? "" : ": " + text
    }

    /// The JSON object of a successful answer, or an error naming the source.
    static func jsonObject(_ response: HTTPResponse, source: String) throws -> [String: any Sendable] {
        guard let object = JSONFields.object(response.body) else {
            throw CloudAuthError(.malformedResponse, source: source, "the answer is not a JSON object")
        }
        return object
    }

    /// The non-empty string field `name`, or an error naming it.
    static func requiredString(_ object: [String: any Sendable], _ name: String, source: String) throws -> String {
        guard let value = object[name] as? String, !value.isEmpty else {
            throw CloudAuthError(.malformedResponse, source: source, "the answer has no '\(name)' string")
        }
        return value
    }

    /// The longest token lifetime accepted from an endpoint.
    static let maximumLifetime: TimeInterval = 7 * 86_400

    /// Builds the token from an answer's times, refusing one that has already expired.
    /// `expiresOn` is absolute (epoch seconds); `expiresIn` and `refreshIn` count from `now`.
    static func accessToken(_ token: String, now: Date, issuedAt: Date? = nil, expiresOn: Double?,
                            expiresIn: Double?, refreshIn: Double? = nil, source: String) throws -> AccessToken {
        let expiresAt: Date
        if let expiresOn { expiresAt = Date(timeIntervalSince1970: expiresOn) }
        else if let expiresIn { expiresAt = now.addingTimeInterval(expiresIn) }
        else {
            throw CloudAuthError(.malformedResponse, source: source, "the answer says neither 'expires_on' nor 'expires_in'")
        }
        // A day is the longest any cloud issues (Azure managed identity); far beyond that the
        // answer is garbage, and a time that is not finite cannot be scheduled at all.
        guard expiresAt.timeIntervalSince1970.isFinite, expiresAt.timeIntervalSince(now) <= maximumLifetime else {
            throw CloudAuthError(.malformedResponse, source: source,
                                 "the token's expiry is not a time within \(Int(maximumLifetime / 86_400)) days")
        }
        guard expiresAt > now else {
            throw CloudAuthError(.expired, source: source,
                                 "the token it issued expired at \(iso8601(expiresAt)), before it was received",
                                 remedy: "check the clock of this machine and of the endpoint")
        }
        let issued = min(issuedAt ?? now, now)
        return AccessToken(token: Secret(token), issuedAt: issued, expiresAt: expiresAt,
                           refreshAfter: refreshIn.map { now.addingTimeInterval($0) }, expiresByLocalClock: expiresOn == nil)
    }

    static func iso8601(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}
