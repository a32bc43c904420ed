import CloudAuth

/// The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding, as PostgreSQL
/// runs it: the user name is empty in the messages by default (PostgreSQL takes it from the
/// StartupMessage).
///
/// A plain value: ``clientFirstMessage`` is sent, ``clientFinalMessage(serverFirst:)`` answers
/// the server's challenge, ``verify(serverFinal:)`` checks that the server knew the password too.
struct SCRAMClient {
    /// Why an exchange cannot go on; the text never contains the password or derived keys.
    struct Failure: Error, Equatable {
        var reason: String
    }

    private let password: Secret
    private let username: String
    private let clientNonce: String
    /// The AuthMessage and the salted password, once the challenge is answered.
    private var authMessage: String?
    private var saltedPassword: [UInt8]?

    /// The GS2 header for "no channel binding": `n,,`; base64 `biws` in the final message.
    private static let gs2Header = "n,,"
    /// Iteration counts above this are refused: a hostile server could make each connection cost
    /// seconds of CPU. PostgreSQL's default is 4096.
    static let maximumIterations = 100_000

    /// `nonce` is the client nonce as sent (printable, no comma); random by default.
    init(password: Secret, username: String = "", nonce: String = Encoding.base64(Digest.randomBytes(18))) {
        self.password = password
        self.username = username
        clientNonce = nonce
    }

    private var clientFirstBare: String { "n=\(username),r=\(clientNonce)" }

    /// The client-first-message.
    var clientFirstMessage: String { Self.gs2Header + clientFirstBare }

    /// The client-final-message answering `serverFirst` (`r=...,s=...,i=...`).
    mutating func clientFinalMessage(serverFirst: String) throws(Failure) -> String {
        var nonce: String?, salt: [UInt8]?, iterations: Int?
        for attribute in serverFirst.split(separator: ",", omittingEmptySubsequences: false) {
            guard attribute.count >= 2, attribute.dropFirst().first == "=" else { continue }
            let value = String(attribute.dropFirst(2))
            switch attribute.first {
            case "r": nonce = value
            case "s": salt = Encoding.fromBase64(value)
            case "i": iterations = Int(value)
            case "m": throw Failure(reason: "the server requires a SCRAM extension this client does not know")
            default: break
            }
        }
        guard let nonce, nonce.hasPrefix(clientNonce), nonce.count > clientNonce.count else {
            throw Failure(reason: "the server's SCRAM nonce does not extend the client's")
        }
        guard let salt, !salt.isEmpty else { throw Failure(reason: "the server's SCRAM salt is missing or not base64") }
        guard let iterations, iterations >= 1, iterations <= Self.maximumIterations else {
            throw Failure(reason: "the server's SCRAM iteration count is missing or outside 1-\(Self.maximumIterations)")
        }
        guard let salted = Digest.pbkdf2SHA256(password: Array(password.reveal().utf8), salt: salt, iterations: iterations) else {
            throw Failure(reason: "libcrypto could not derive the SCRAM key")
        }
        let finalWithoutProof = "c=\(Encoding.base64(Self.gs2Header)),r=\(nonce)"
        let authMessage = "\(clientFirstBare),\(serverFirst),\(finalWithoutProof)"
        let clientKey = Digest.hmacSHA256(key: salted, message: "Client Key")
        let storedKey = Digest.sha256(clientKey)
        let signature = Digest.hmacSHA256(key: storedKey, message: authMessage)
        let proof = zip(clientKey, signature).map { $0 ^ $1 }
        self.authMessage = authMessage
        saltedPassword = salted
        return "\(finalWithoutProof),p=\(Encoding.base64(proof))"
    }

    /// Checks the server-final-message (`v=...`): the server proves it holds the verifier.
    func verify(serverFinal: String) throws(Failure) {
        guard let authMessage, let saltedPassword else { throw Failure(reason: "the server ended SCRAM before the challenge") }
        if serverFinal.hasPrefix("e=") {
            throw Failure(reason: "the server refused SCRAM: \(serverFinal.dropFirst(2).prefix(200))")
        }
        guard serverFinal.hasPrefix("v="), let signature = Encoding.fromBase64(String(serverFinal.dropFirst(2))) else {
            throw Failure(reason: "the server's final SCRAM message has no verifier")
        }
        let serverKey = Digest.hmacSHA256(key: saltedPassword, message: "Server Key")
        let expected = Digest.hmacSHA256(key: serverKey, message: authMessage)
        guard Digest.constantTimeEquals(signature, expected) else {
            throw Failure(reason: "the server's SCRAM signature is wrong: it does not know this password")
        }
    }
}
