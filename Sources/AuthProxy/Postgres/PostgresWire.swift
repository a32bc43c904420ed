import NIOCore

/// The first packet a PostgreSQL client sends, which has no message type byte.
public enum StartupPacket: Equatable, Sendable {
    /// The client asks for TLS on this connection.
    case sslRequest
    /// The client asks for GSSAPI encryption on this connection.
    case gssEncryptionRequest
    /// The client asks to cancel the query running in another session.
    case cancel(CancelKey)
    /// The session's StartupMessage: its protocol version and every parameter, in order.
    case startup(StartupMessage)
}

/// A backend's process id and secret key, which a CancelRequest must quote. Protocol 3.2 keys
/// are up to 256 bytes long; 3.0 keys are 4.
public struct CancelKey: Hashable, Sendable {
    public var processID: Int32
    public var secret: [UInt8]

    public init(processID: Int32, secret: [UInt8]) {
        self.processID = processID
        self.secret = secret
    }
}

/// One StartupMessage parameter as the client sent its bytes: a value need not be UTF-8 (the
/// client's encoding may be another, e.g. a LATIN1 database name), and it reaches the server
/// unchanged.
public struct StartupParameter: Equatable, Sendable {
    public var name: [UInt8]
    public var value: [UInt8]

    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: String) {
        self.init(name: Array(name.utf8), value: Array(value.utf8))
    }
}

/// A StartupMessage: the protocol version and the parameters (user, database, options,
/// application_name, replication, `_pq_.` extensions...) exactly as the client sent them.
public struct StartupMessage: Equatable, Sendable {
    /// Major version in the high 16 bits, minor in the low (3.0 is 196608, 3.2 is 196610).
    public var protocolVersion: UInt32
    public var parameters: [StartupParameter]

    public init(protocolVersion: UInt32, parameters: [StartupParameter]) {
        self.protocolVersion = protocolVersion
        self.parameters = parameters
    }

    /// The value of the parameter `name`, as sent.
    public func value(of name: String) -> [UInt8]? {
        let name = Array(name.utf8)
        return parameters.first { $0.name == name }?.value
    }

    /// The message with `user` set to `user`: replaced where the client gave it, else added first.
    public func settingUser(_ user: String) -> StartupMessage {
        var copy = self
        let name = Array("user".utf8)
        if let index = copy.parameters.firstIndex(where: { $0.name == name }) {
            copy.parameters[index].value = Array(user.utf8)
        } else {
            copy.parameters.insert(StartupParameter("user", user), at: 0)
        }
        return copy
    }
}

/// Why a client's first packet was refused; each case maps to the ErrorResponse it is answered with.
public enum StartupPacketError: Error, Equatable, Sendable {
    /// The length prefix is below the smallest or above the largest startup packet.
    case invalidLength(Int)
    /// A protocol major version other than 3, or an unknown request code.
    case unsupportedProtocol(UInt32)
    /// The packet's contents do not parse (parameters not NUL-terminated, a short cancel key...).
    case malformed(String)
    /// A second SSLRequest or GSSENCRequest after the first was answered.
    case repeatedNegotiation

    /// The SQLSTATE and message the client is told.
    public var sqlState: String { "08P01" }

    public var message: String {
        switch self {
        case let .invalidLength(length):
            "invalid length of startup packet (\(length) bytes; between \(PostgresWire.minimumStartupLength) and \(PostgresWire.maximumStartupLength) allowed)"
        case let .unsupportedProtocol(code):
            "unsupported frontend protocol \(code >> 16).\(code & 0xFFFF): this proxy speaks protocol 3"
        case let .malformed(detail):
            "invalid startup packet: \(detail)"
        case .repeatedNegotiation:
            "encryption was already negotiated on this connection"
        }
    }
}

/// PostgreSQL frontend/backend protocol framing: decoding the packets the proxy must understand
/// and encoding the messages it sends itself. Pure functions over `ByteBuffer`s, no I/O.
public enum PostgresWire {
    /// The smallest startup packet: a length and a code.
    public static let minimumStartupLength = 8
    /// The largest startup packet PostgreSQL itself accepts (`MAX_STARTUP_PACKET_LENGTH`).
    public static let maximumStartupLength = 10_000
    /// The largest backend message accepted before the session is established (authentication
    /// requests, parameter statuses, errors): all are small; a larger one is a broken server.
    public static let maximumHandshakeMessageLength = 1 << 20

    static let sslRequestCode: UInt32 = 80_877_103
    static let gssEncryptionRequestCode: UInt32 = 80_877_104
    static let cancelRequestCode: UInt32 = 80_877_102
    /// Cancel keys are at most 256 bytes (protocol 3.2).
    static let maximumCancelKeyLength = 256

    // MARK: Decoding

    /// Takes one startup packet off the front of `buffer`; nil (and `buffer` untouched) while it
    /// is incomplete. Throws for a packet that can never become valid.
    public static func decodeStartupPacket(_ buffer: inout ByteBuffer) throws(StartupPacketError) -> StartupPacket? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        guard length >= minimumStartupLength, length <= maximumStartupLength else { throw .invalidLength(Int(length)) }
        guard buffer.readableBytes >= Int(length) else { return nil }
        var packet = buffer.getSlice(at: buffer.readerIndex + 4, length: Int(length) - 4)!
        let code = packet.readInteger(as: UInt32.self)!
        let decoded: StartupPacket
        switch code {
        case sslRequestCode, gssEncryptionRequestCode:
            guard packet.readableBytes == 0 else { throw .malformed("an encryption request carries no data") }
            decoded = code == sslRequestCode ? .sslRequest : .gssEncryptionRequest
        case cancelRequestCode:
            guard let processID = packet.readInteger(as: Int32.self), packet.readableBytes >= 4,
                  packet.readableBytes <= maximumCancelKeyLength else {
                throw .malformed("a cancel request needs a process id and a key of 4 to 256 bytes")
            }
            decoded = .cancel(CancelKey(processID: processID, secret: packet.readBytes(length: packet.readableBytes)!))
        case let version where version >> 16 == 3:
            decoded = .startup(StartupMessage(protocolVersion: version, parameters: try parameters(&packet)))
        default:
            throw .unsupportedProtocol(code)
        }
        buffer.moveReaderIndex(forwardBy: Int(length))
        return decoded
    }

    /// The NUL-terminated name/value pairs of a StartupMessage, ending in an empty name.
    private static func parameters(_ packet: inout ByteBuffer) throws(StartupPacketError) -> [StartupParameter] {
        var result: [StartupParameter] = []
        while true {
            guard let name = nullTerminatedBytes(&packet) else {
                throw .malformed("the parameter list does not end with an empty name")
            }
            if name.isEmpty { break }
            let shownName = String(decoding: name.prefix(64), as: UTF8.self)
            guard let value = nullTerminatedBytes(&packet) else {
                throw .malformed("parameter '\(shownName)' has no NUL-terminated value")
            }
            // The server takes the last of a repeated parameter, the proxy's check the first: a
            // second `user` would log in as another role than the one checked.
            guard !result.contains(where: { $0.name == name }) else {
                throw .malformed("parameter '\(shownName)' is given twice")
            }
            result.append(StartupParameter(name: name, value: value))
        }
        guard packet.readableBytes == 0 else { throw .malformed("bytes follow the parameter list") }
        return result
    }

    /// The bytes up to the next NUL, which is consumed too; nil when there is none.
    private static func nullTerminatedBytes(_ buffer: inout ByteBuffer) -> [UInt8]? {
        guard let end = buffer.readableBytesView.firstIndex(of: 0) else { return nil }
        let bytes = buffer.readBytes(length: end - buffer.readerIndex)
        buffer.moveReaderIndex(forwardBy: 1)
        return bytes
    }

    /// One backend message: its type byte and its body (without type and length).
    public struct BackendMessage: Sendable {
        public var type: UInt8
        public var body: ByteBuffer
        /// The whole message as received, for forwarding unchanged.
        public var raw: ByteBuffer
    }

    /// Why a backend message cannot be framed.
    public struct FramingError: Error, Equatable, Sendable {
        public var length: Int
    }

    /// Takes one backend message off the front of `buffer`; nil while it is incomplete. Throws when
    /// its length is below 4 or above ``maximumHandshakeMessageLength``.
    public static func decodeBackendMessage(_ buffer: inout ByteBuffer) throws(FramingError) -> BackendMessage? {
        guard let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              let length = buffer.getInteger(at: buffer.readerIndex + 1, as: Int32.self) else { return nil }
        guard length >= 4, length <= maximumHandshakeMessageLength else { throw FramingError(length: Int(length)) }
        guard buffer.readableBytes >= 1 + Int(length) else { return nil }
        let raw = buffer.readSlice(length: 1 + Int(length))!
        return BackendMessage(type: type, body: raw.getSlice(at: raw.readerIndex + 5, length: Int(length) - 4)!, raw: raw)
    }

    /// The fields of an ErrorResponse or NoticeResponse body by their one-byte codes
    /// (`C` SQLSTATE, `M` message, `S` severity...).
    public static func errorFields(_ body: ByteBuffer) -> [UInt8: String] {
        var body = body
        var fields: [UInt8: String] = [:]
        while let code = body.readInteger(as: UInt8.self), code != 0, let value = body.readNullTerminatedString() {
            fields[code] = value
        }
        return fields
    }

    // MARK: Encoding

    /// An ErrorResponse with severity FATAL, the given SQLSTATE and message.
    public static func errorResponse(sqlState: String, message: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt8(ascii: "E"))
        writeLengthPrefixed(into: &buffer) { body in
            for (code, value) in [("S", "FATAL"), ("V", "FATAL"), ("C", sqlState), ("M", message)] {
                body.writeInteger(UInt8(ascii: Unicode.Scalar(code)!))
                body.writeNullTerminatedString(value)
            }
            body.writeInteger(UInt8(0))
        }
        return buffer
    }

    /// An SSLRequest, as the proxy sends it upstream.
    public static func sslRequest() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int32(8))
        buffer.writeInteger(sslRequestCode)
        return buffer
    }

    /// A CancelRequest quoting `key`.
    public static func cancelRequest(_ key: CancelKey) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int32(12 + key.secret.count))
        buffer.writeInteger(cancelRequestCode)
        buffer.writeInteger(key.processID)
        buffer.writeBytes(key.secret)
        return buffer
    }

    /// A StartupMessage with `message`'s version and parameters, in order.
    public static func startupMessage(_ message: StartupMessage) -> ByteBuffer {
        var buffer = ByteBuffer()
        let start = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        buffer.writeInteger(message.protocolVersion)
        for parameter in message.parameters {
            buffer.writeBytes(parameter.name)
            buffer.writeInteger(UInt8(0))
            buffer.writeBytes(parameter.value)
            buffer.writeInteger(UInt8(0))
        }
        buffer.writeInteger(UInt8(0))
        buffer.setInteger(Int32(buffer.writerIndex - start), at: start)
        return buffer
    }

    /// A PasswordMessage (`p`) carrying `body` as is: a NUL-terminated password, or SASL data.
    public static func passwordMessage(_ write: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt8(ascii: "p"))
        writeLengthPrefixed(into: &buffer, write)
        return buffer
    }

    /// Writes a length-prefixed body (the length counts itself).
    private static func writeLengthPrefixed(into buffer: inout ByteBuffer, _ write: (inout ByteBuffer) -> Void) {
        let start = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        write(&buffer)
        buffer.setInteger(Int32(buffer.writerIndex - start), at: start)
    }
}
