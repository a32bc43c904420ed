@testable import AuthProxy
import NIOCore
import Testing

/// Builds a startup packet: a length prefix, then `code`, then `body`.
private func packet(code: UInt32, _ body: [UInt8] = []) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.writeInteger(Int32(8 + body.count))
    buffer.writeInteger(code)
    buffer.writeBytes(body)
    return buffer
}

private func parameters(_ pairs: [(String, String)]) -> [UInt8] {
    var bytes: [UInt8] = []
    for (name, value) in pairs {
        bytes += Array(name.utf8)
        bytes.append(0)
        bytes += Array(value.utf8)
        bytes.append(0)
    }
    bytes.append(0)
    return bytes
}

@Suite("PostgreSQL startup framing")
struct PostgresWireTests {
    @Test("SSLRequest, GSSENCRequest and CancelRequest are recognised")
    func requests() throws {
        var ssl = packet(code: 80_877_103)
        #expect(try PostgresWire.decodeStartupPacket(&ssl) == .sslRequest)
        #expect(ssl.readableBytes == 0)
        var gss = packet(code: 80_877_104)
        #expect(try PostgresWire.decodeStartupPacket(&gss) == .gssEncryptionRequest)
        var cancel = packet(code: 80_877_102, [0, 0, 0x30, 0x39, 1, 2, 3, 4])
        #expect(try PostgresWire.decodeStartupPacket(&cancel) == .cancel(CancelKey(processID: 12345, secret: [1, 2, 3, 4])))
        // Protocol 3.2 keys are longer.
        var longKey = packet(code: 80_877_102, [0, 0, 0, 7] + [UInt8](repeating: 9, count: 32))
        #expect(try PostgresWire.decodeStartupPacket(&longKey) == .cancel(CancelKey(processID: 7, secret: [UInt8](repeating: 9, count: 32))))
    }

    @Test("A StartupMessage keeps every parameter in order, for protocol 3.0 and 3.2", arguments: [UInt32(196_608), 196_610])
    func startup(version: UInt32) throws {
        let pairs = [("user", "kong"), ("database", "kong"), ("application_name", "gateway"), ("options", "-c x=y"),
                     ("replication", "database"), ("_pq_.extension", "on")]
        var buffer = packet(code: version, parameters(pairs))
        let decoded = try PostgresWire.decodeStartupPacket(&buffer)
        guard case let .startup(message)? = decoded else {
            Issue.record("not a startup: \(String(describing: decoded))")
            return
        }
        #expect(message.protocolVersion == version)
        #expect(message.parameters == pairs.map { StartupParameter($0.0, $0.1) })
        // Encoding it again gives the same bytes.
        var again = PostgresWire.startupMessage(message)
        #expect(try PostgresWire.decodeStartupPacket(&again) == decoded)
    }

    @Test("Bytes that are not UTF-8 in a parameter reach the server unchanged (a client's encoding may be another)")
    func nonUTF8ParameterKept() throws {
        let latin1 = parameters([("user", "kong")]).dropLast() + Array("database".utf8) + [0, 0x63, 0x61, 0x66, 0xE9, 0]
            + Array("application_name".utf8) + [0, 0xFF, 0xFE, 0, 0]
        var buffer = packet(code: 196_608, Array(latin1))
        guard case let .startup(message)? = try PostgresWire.decodeStartupPacket(&buffer) else {
            Issue.record("not a startup")
            return
        }
        #expect(message.value(of: "database") == [0x63, 0x61, 0x66, 0xE9])
        #expect(message.value(of: "application_name") == [0xFF, 0xFE])
        var encoded = PostgresWire.startupMessage(message)
        #expect(encoded.readBytes(length: encoded.readableBytes) == Array(packet(code: 196_608, Array(latin1)).readableBytesView))
    }

    @Test("An incomplete packet waits for more and leaves the buffer as it was")
    func incomplete() throws {
        let whole = packet(code: 196_608, parameters([("user", "kong")]))
        for cut in [0, 3, 4, 7, whole.readableBytes - 1] {
            var part = whole.getSlice(at: 0, length: cut)!
            #expect(try PostgresWire.decodeStartupPacket(&part) == nil)
            #expect(part.readableBytes == cut)
        }
    }

    @Test("A 10 MB length prefix is refused before anything is buffered")
    func hugeLength() {
        var buffer = ByteBuffer(bytes: [0x00, 0xA0, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00])
        #expect(throws: StartupPacketError.invalidLength(10_485_760)) { try PostgresWire.decodeStartupPacket(&buffer) }
    }

    @Test("Garbage is refused: an HTTP request, a negative or tiny length, an unknown protocol")
    func garbage() {
        var http = ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n")
        #expect(throws: StartupPacketError.self) { try PostgresWire.decodeStartupPacket(&http) }
        var negative = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 0])
        #expect(throws: StartupPacketError.invalidLength(-16)) { try PostgresWire.decodeStartupPacket(&negative) }
        var tiny = ByteBuffer(bytes: [0, 0, 0, 4, 0, 0, 0, 0])
        #expect(throws: StartupPacketError.invalidLength(4)) { try PostgresWire.decodeStartupPacket(&tiny) }
        var version2 = packet(code: 0x0002_0000)
        #expect(throws: StartupPacketError.unsupportedProtocol(0x0002_0000)) { try PostgresWire.decodeStartupPacket(&version2) }
    }

    @Test("Parameters that are not NUL-terminated, or bytes after them, are malformed")
    func malformedParameters() {
        var unterminated = packet(code: 196_608, Array("user".utf8) + [0] + Array("kong".utf8))
        #expect(throws: StartupPacketError.self) { try PostgresWire.decodeStartupPacket(&unterminated) }
        var trailing = packet(code: 196_608, parameters([("user", "kong")]) + [1, 2])
        #expect(throws: StartupPacketError.malformed("bytes follow the parameter list")) { try PostgresWire.decodeStartupPacket(&trailing) }
        var shortKey = packet(code: 80_877_102, [0, 0, 0, 1, 9])
        #expect(throws: StartupPacketError.self) { try PostgresWire.decodeStartupPacket(&shortKey) }
    }

    @Test("A backend message longer than the handshake allows is refused; a short one waits")
    func backendFraming() throws {
        var huge = ByteBuffer(bytes: [UInt8(ascii: "R"), 0x7F, 0, 0, 0])
        #expect(throws: PostgresWire.FramingError.self) { try PostgresWire.decodeBackendMessage(&huge) }
        var partial = ByteBuffer(bytes: [UInt8(ascii: "R"), 0, 0, 0, 8, 0, 0])
        #expect(try PostgresWire.decodeBackendMessage(&partial) == nil)
        var ok = ByteBuffer(bytes: [UInt8(ascii: "R"), 0, 0, 0, 8, 0, 0, 0, 0])
        let message = try #require(try PostgresWire.decodeBackendMessage(&ok))
        #expect(message.type == UInt8(ascii: "R"))
        #expect(message.body.readableBytes == 4)
        #expect(message.raw.readableBytes == 9)
    }

    @Test("An ErrorResponse carries severity, SQLSTATE and message")
    func errorResponse() {
        var response = PostgresWire.errorResponse(sqlState: "53300", message: "too many")
        #expect(response.readInteger(as: UInt8.self) == UInt8(ascii: "E"))
        let length = Int(response.readInteger(as: Int32.self)!)
        #expect(length == response.readableBytes + 4)
        let fields = PostgresWire.errorFields(response)
        #expect(fields[UInt8(ascii: "C")] == "53300")
        #expect(fields[UInt8(ascii: "M")] == "too many")
        #expect(fields[UInt8(ascii: "S")] == "FATAL")
    }
}

@Suite("The client's startup state machine")
struct ClientStartupStateMachineTests {
    @Test("SSLRequest and GSSENCRequest are answered N, then the StartupMessage is taken")
    func negotiationThenStartup() {
        var machine = ClientStartupStateMachine()
        var buffer = packet(code: 80_877_104)
        buffer.writeImmutableBuffer(packet(code: 80_877_103))
        buffer.writeImmutableBuffer(packet(code: 196_608, parameters([("database", "kong")])))
        #expect(machine.next(&buffer) == .answer(UInt8(ascii: "N")))
        #expect(machine.next(&buffer) == .answer(UInt8(ascii: "N")))
        #expect(machine.next(&buffer) == .startup(StartupMessage(protocolVersion: 196_608, parameters: [StartupParameter("database", "kong")])))
        #expect(buffer.readableBytes == 0)
    }

    @Test("A second SSLRequest is refused with 08P01")
    func repeatedSSL() {
        var machine = ClientStartupStateMachine()
        var buffer = packet(code: 80_877_103)
        buffer.writeImmutableBuffer(packet(code: 80_877_103))
        #expect(machine.next(&buffer) == .answer(UInt8(ascii: "N")))
        guard case let .refuse(sqlState, _) = machine.next(&buffer) else {
            Issue.record("not refused")
            return
        }
        #expect(sqlState == "08P01")
    }

    @Test("A parameter given twice is malformed: the server would take the last user, the check saw the first")
    func repeatedParameter() {
        var twoUsers = packet(code: 196_608, parameters([("user", "kong"), ("database", "kong"), ("user", "postgres")]))
        #expect(throws: StartupPacketError.malformed("parameter 'user' is given twice")) { try PostgresWire.decodeStartupPacket(&twoUsers) }
        var twoOptions = packet(code: 196_608, parameters([("options", "-c a=1"), ("options", "-c a=2")]))
        #expect(throws: StartupPacketError.malformed("parameter 'options' is given twice")) { try PostgresWire.decodeStartupPacket(&twoOptions) }
    }

    @Test("The user must be absent or the credential's; absent, it is added")
    func userCheck() {
        let absent = StartupMessage(protocolVersion: 196_608, parameters: [StartupParameter("database", "kong")])
        let added = try? ClientStartupStateMachine.upstreamStartup(absent, credentialUser: "kong", credentialName: "orders-db").get()
        #expect(added?.value(of: "user") == Array("kong".utf8))
        #expect(added?.value(of: "database") == Array("kong".utf8))
        let other = StartupMessage(protocolVersion: 196_608, parameters: [StartupParameter("user", "root")])
        let refused = ClientStartupStateMachine.upstreamStartup(other, credentialUser: "kong", credentialName: "orders-db")
        #expect(throws: ProxyRefusal.userMismatch(credential: "orders-db", expected: "kong", given: "root")) { try refused.get() }
        #expect(ProxyRefusal.userMismatch(credential: "orders-db", expected: "kong", given: "root").sqlState == "28000")
    }
}
