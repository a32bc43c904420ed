/// An error from obtaining a credential: which source failed, why, and what to do about it.
///
/// Messages are our own: they name endpoints, files and keys, never secret values, and carry of
/// an upstream error answer only what ``UpstreamText`` lets through (the service's documented
/// error code and a masked, bounded excerpt of its message). `code` is a short, stable token from
/// a closed set (``Code/all``), fit for a metric label or a JSON `code` field.
public struct CloudAuthError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The kind of failure, stable across releases.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String, Sendable, CaseIterable {
            case invalidInput = "invalid_input"
            case configuration
            case unavailable
            case timeout
            case rejected
            case malformedResponse = "malformed_response"
            case expired
            case io
            case crypto
        }
        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// Input given by the user (flag, config value, env var) is not valid.
        public static let invalidInput = Code(.invalidInput)
        /// No source is configured or the configured source cannot be used.
        public static let configuration = Code(.configuration)
        /// The endpoint could not be reached or answered with a transient error.
        public static let unavailable = Code(.unavailable)
        /// The endpoint did not answer in time.
        public static let timeout = Code(.timeout)
        /// The endpoint refused the request (4xx, bad signature, unknown identity).
        public static let rejected = Code(.rejected)
        /// The endpoint answered with something that is not what its protocol promises.
        public static let malformedResponse = Code(.malformedResponse)
        /// A credential was obtained but has already expired.
        public static let expired = Code(.expired)
        /// A local file could not be read.
        public static let io = Code(.io)
        /// A cryptographic operation failed (bad key, library error).
        public static let crypto = Code(.crypto)

        /// Every code, for a closed set of metric labels.
        public static let all: [Code] = Kind.allCases.map(Code.init)

        public var description: String { kind.rawValue }
    }

    public var code: Code
    /// What failed: an endpoint URL without its query, a file path, an env var name.
    public var source: String
    /// Why it failed, in a full sentence, free of secrets.
    public var message: String
    /// What the user can do about it, when there is something to say.
    public var remedy: String?

    public init(_ code: Code, source: String, _ message: String, remedy: String? = nil) {
        self.code = code
        self.source = source
        self.message = message
        self.remedy = remedy
    }

    public var description: String {
        var text = "\(source): \(message)"
        if let remedy { text += " (\(remedy))" }
        return text
    }
}
