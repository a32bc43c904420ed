import CloudAuth
import NIOCore

/// How an upstream handshake failed, in words fit for the client and the log (never a secret).
public enum UpstreamAuthFailure: Error, Equatable, Sendable {
    /// The server refused the credential (SQLSTATE class 28): its own message.
    case rejected(serverMessage: String)
    /// The server refused the session for another reason (no such database, too many
    /// connections...): its ErrorResponse, forwarded to the client as is.
    case serverError(ErrorResponse)
    /// The server asked for something the proxy cannot answer, or broke the protocol.
    case protocolViolation(String)

    /// An ErrorResponse as the server sent it, kept whole for forwarding.
    public struct ErrorResponse: Equatable, Sendable {
        public var raw: ByteBuffer
        public var sqlState: String
        public var message: String
    }
}

/// The upstream side of a proxied PostgreSQL session, from the StartupMessage sent to the first
/// ReadyForQuery: answers the server's password request with the credential's token (cleartext,
/// MD5 or SCRAM-SHA-256) and decides what the client sees. Plain value, no I/O: each backend
/// message in, one action out.
///
/// Nothing reaches the client before AuthenticationOk except NegotiateProtocolVersion (the client
/// must know which protocol minor version it speaks); after it everything the server sends is
/// forwarded, and the session's cancel key is noted on the way.
struct UpstreamAuthStateMachine {
    enum Action: Equatable {
        /// Send this message to the server.
        case sendToServer(ByteBuffer)
        /// Pass this message on to the client.
        case forwardToClient(ByteBuffer)
        /// The first ReadyForQuery, to be forwarded: from now on bytes are relayed as they come.
        case ready(ByteBuffer, cancelKey: CancelKey?)
        /// The session cannot be established.
        case fail(UpstreamAuthFailure)
        /// Nothing to do for this message.
        case none
    }

    private enum State {
        /// Waiting for the server's authentication request.
        case awaitingRequest
        /// The password (cleartext or MD5) is sent; AuthenticationOk or an error comes next.
        case awaitingOk
        /// SCRAM client-first sent; the challenge comes next.
        case scramChallenge(SCRAMClient)
        /// SCRAM client-final sent; the server's signature comes next.
        case scramFinal(SCRAMClient)
        /// AuthenticationOk seen; parameter statuses and the key come until ReadyForQuery.
        case authenticated(CancelKey?)
        case done
    }

    private var state = State.awaitingRequest
    private let user: String
    private let password: Secret
    private let nonce: String

    /// `user` is the one the StartupMessage names (MD5 salts with it); `nonce` is SCRAM's client nonce.
    init(user: String, password: Secret, nonce: String = Encoding.base64(Digest.randomBytes(18))) {
        self.user = user
        self.password = password
        self.nonce = nonce
    }

    mutating func received(_ message: PostgresWire.BackendMessage) -> Action {
        switch (message.type, state) {
        case (UInt8(ascii: "E"), .done):
            return .none
        case (UInt8(ascii: "E"), .authenticated):
            state = .done
            return .fail(.serverError(Self.errorResponse(message)))
        case (UInt8(ascii: "E"), _):
            state = .done
            let error = Self.errorResponse(message)
            return .fail(error.sqlState.hasPrefix("28") ? .rejected(serverMessage: error.message) : .serverError(error))
        case (UInt8(ascii: "v"), .awaitingRequest):
            return .forwardToClient(message.raw)
        case (UInt8(ascii: "R"), _):
            return authenticationRequest(message)
        case (UInt8(ascii: "K"), .authenticated):
            var body = message.body
            guard let processID = body.readInteger(as: Int32.self), (4...PostgresWire.maximumCancelKeyLength).contains(body.readableBytes) else {
                return fail("BackendKeyData has no valid key")
            }
            state = .authenticated(CancelKey(processID: processID, secret: body.readBytes(length: body.readableBytes)!))
            return .forwardToClient(message.raw)
        case (UInt8(ascii: "Z"), .authenticated(let key)):
            state = .done
            return .ready(message.raw, cancelKey: key)
        case (UInt8(ascii: "S"), .authenticated), (UInt8(ascii: "N"), .authenticated), (UInt8(ascii: "v"), .authenticated):
            return .forwardToClient(message.raw)
        case (UInt8(ascii: "N"), _):
            // A notice before authentication is for the proxy's connection, not the client's.
            return .none
        default:
            return fail("unexpected message '\(Self.printable(message.type))' during the handshake")
        }
    }

    private mutating func authenticationRequest(_ message: PostgresWire.BackendMessage) -> Action {
        var body = message.body
        guard let code = body.readInteger(as: Int32.self) else { return fail("an authentication request without a code") }
        switch (code, state) {
        case (0, .awaitingOk), (0, .awaitingRequest):
            state = .authenticated(nil)
            return .forwardToClient(message.raw)
        case (3, .awaitingRequest):
            state = .awaitingOk
            return .sendToServer(PostgresWire.passwordMessage { $0.writeNullTerminatedString(password.reveal()) })
        case (5, .awaitingRequest):
            guard let salt = body.readBytes(length: 4),
                  let inner = Digest.md5(Array((password.reveal() + user).utf8)),
                  let outer = Digest.md5(Array(Encoding.hex(inner).utf8) + salt) else {
                return fail("the server asked for MD5, which libcrypto does not provide here (FIPS mode?)")
            }
            state = .awaitingOk
            return .sendToServer(PostgresWire.passwordMessage { $0.writeNullTerminatedString("md5" + Encoding.hex(outer)) })
        case (10, .awaitingRequest):
            var mechanisms: [String] = []
            while let name = body.readNullTerminatedString(), !name.isEmpty { mechanisms.append(name) }
            guard mechanisms.contains("SCRAM-SHA-256") else {
                return fail("the server offers SASL mechanisms \(mechanisms.joined(separator: ", ")) but not SCRAM-SHA-256 without channel binding")
            }
            let scram = SCRAMClient(password: password, nonce: nonce)
            state = .scramChallenge(scram)
            let first = Array(scram.clientFirstMessage.utf8)
            return .sendToServer(PostgresWire.passwordMessage { body in
                body.writeNullTerminatedString("SCRAM-SHA-256")
                body.writeInteger(Int32(first.count))
                body.writeBytes(first)
            })
        case (11, .scramChallenge(var scram)):
            let serverFirst = String(decoding: body.readableBytesView, as: UTF8.self)
            do {
                let final = try scram.clientFinalMessage(serverFirst: serverFirst)
                state = .scramFinal(scram)
                return .sendToServer(PostgresWire.passwordMessage { $0.writeString(final) })
            } catch {
                return fail(error.reason)
            }
        case (12, .scramFinal(let scram)):
            do {
                try scram.verify(serverFinal: String(decoding: body.readableBytesView, as: UTF8.self))
                state = .awaitingOk
                return .none
            } catch {
                return fail(error.reason)
            }
        case (2, _), (7, _), (8, _), (9, _):
            return fail("the server asks for Kerberos/GSSAPI/SSPI authentication (code \(code)); the proxy answers password, MD5 and SCRAM-SHA-256 only")
        default:
            return fail("authentication request \(code) out of order")
        }
    }

    private mutating func fail(_ reason: String) -> Action {
        state = .done
        return .fail(.protocolViolation(reason))
    }

    private static func errorResponse(_ message: PostgresWire.BackendMessage) -> UpstreamAuthFailure.ErrorResponse {
        let fields = PostgresWire.errorFields(message.body)
        return UpstreamAuthFailure.ErrorResponse(raw: message.raw, sqlState: fields[UInt8(ascii: "C")] ?? "XX000",
                                                 message: fields[UInt8(ascii: "M")] ?? "no message")
    }

    private static func printable(_ type: UInt8) -> String {
        (0x21...0x7e).contains(type) ? String(UnicodeScalar(type)) : "0x" + String(type, radix: 16)
    }
}
