import NIOCore

/// The client side of a proxied PostgreSQL connection until its StartupMessage or CancelRequest:
/// encryption requests are answered `N` (the client talks to a local socket; the proxy encrypts
/// upstream), each at most once, and a packet that can never be valid is refused. Plain value,
/// no I/O: the handler feeds it the bytes received so far.
struct ClientStartupStateMachine {
    enum Action: Equatable {
        /// The packet is incomplete: read more.
        case needMoreData
        /// Write this byte to the client (the `N` refusing encryption), then call again.
        case answer(UInt8)
        /// The session's StartupMessage.
        case startup(StartupMessage)
        /// A CancelRequest for another session.
        case cancel(CancelKey)
        /// Answer an ErrorResponse with this SQLSTATE and message, then close.
        case refuse(sqlState: String, message: String)
    }

    private var sslAnswered = false
    private var gssAnswered = false
    private var finished = false

    /// Decodes the next packet off the front of `buffer`.
    mutating func next(_ buffer: inout ByteBuffer) -> Action {
        guard !finished else { return .needMoreData }
        let packet: StartupPacket?
        do {
            packet = try PostgresWire.decodeStartupPacket(&buffer)
        } catch {
            finished = true
            return .refuse(sqlState: error.sqlState, message: error.message)
        }
        switch packet {
        case nil:
            return .needMoreData
        case .sslRequest?:
            defer { sslAnswered = true }
            return negotiation(alreadyAnswered: sslAnswered)
        case .gssEncryptionRequest?:
            defer { gssAnswered = true }
            return negotiation(alreadyAnswered: gssAnswered)
        case let .cancel(key)?:
            finished = true
            return .cancel(key)
        case let .startup(message)?:
            finished = true
            return .startup(message)
        }
    }

    private mutating func negotiation(alreadyAnswered: Bool) -> Action {
        guard !alreadyAnswered else {
            finished = true
            let error = StartupPacketError.repeatedNegotiation
            return .refuse(sqlState: error.sqlState, message: error.message)
        }
        return .answer(UInt8(ascii: "N"))
    }

    /// The StartupMessage to send upstream for a client's `message`, or why it is refused:
    /// `user` must be absent (it is then added) or equal `credentialUser`.
    static func upstreamStartup(_ message: StartupMessage, credentialUser: String,
                                credentialName: String) -> Result<StartupMessage, ProxyRefusal> {
        if let user = message.value(of: "user"), user != Array(credentialUser.utf8) {
            return .failure(.userMismatch(credential: credentialName, expected: credentialUser, given: String(decoding: user, as: UTF8.self)))
        }
        return .success(message.settingUser(credentialUser))
    }
}
