import CloudAuth

/// Why a refresh did not produce a credential: a ``Code`` from a closed set (the listing's
/// `last_error_code`, a 503 answer's `last_error_code`, the `reason` of
/// `credagent_refresh_failures_total`) and our own message, which names the endpoint or file that
/// failed and never holds a secret or an upstream body (see ``UpstreamText``).
public struct RefreshFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure, stable across releases: a ``CloudAuthError/Code`` word when obtaining
    /// the credential failed, else one of the agent's own.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: Hashable, Sendable {
            case cloud(CloudAuthError.Code)
            case removed
            case other
        }
        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// The failure of obtaining the credential, by its ``CloudAuthError/Code``.
        public init(_ code: CloudAuthError.Code) { self.init(.cloud(code)) }

        public static let invalidInput = Code(CloudAuthError.Code.invalidInput)
        public static let configuration = Code(CloudAuthError.Code.configuration)
        public static let unavailable = Code(CloudAuthError.Code.unavailable)
        public static let timeout = Code(CloudAuthError.Code.timeout)
        public static let rejected = Code(CloudAuthError.Code.rejected)
        public static let malformedResponse = Code(CloudAuthError.Code.malformedResponse)
        /// Also: the credential obtained expires too soon to be served.
        public static let expired = Code(CloudAuthError.Code.expired)
        public static let io = Code(CloudAuthError.Code.io)
        public static let crypto = Code(CloudAuthError.Code.crypto)
        /// The credential was removed (a reload) or the agent stopped while a client waited.
        public static let removed = Code(.removed)
        /// An error that does not say what kind it is.
        public static let other = Code(.other)

        /// Every code, for a closed set of metric labels.
        public static let all: [Code] = CloudAuthError.Code.all.map(Code.init) + [removed, other]

        public var description: String {
            switch kind {
            case let .cloud(code): code.description
            case .removed: "removed"
            case .other: "other"
            }
        }
    }

    public var code: Code
    /// The cause, free of secrets (it names the endpoint or file that failed).
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The failure for an error a credential source threw: a ``CloudAuthError`` keeps its code
    /// and description; anything else is ``Code/other`` with its description cut to
    /// ``UpstreamText/excerptLimit`` and masked, as it may quote anything.
    public init(_ error: any Error) {
        switch error {
        case let error as RefreshFailure: self = error
        case let error as CloudAuthError: self.init(Code(error.code), error.description)
        default: self.init(.other, UpstreamText.excerpt(String(describing: error)))
        }
    }

    static let removedWhileWaiting = RefreshFailure(.removed, "the credential was removed")

    public var description: String { "\(code): \(message)" }
}
