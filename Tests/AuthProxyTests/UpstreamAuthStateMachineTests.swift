@testable import AuthProxy
import CloudAuth
import NIOCore
import Testing

private func backend(_ type: Character, _ body: [UInt8]) -> PostgresWire.BackendMessage {
    var raw = ByteBuffer()
    raw.writeInteger(type.asciiValue!)
    raw.writeInteger(Int32(4 + body.count))
    raw.writeBytes(body)
    return try! PostgresWire.decodeBackendMessage(&raw)!
}

private func authentication(_ code: Int32, _ rest: [UInt8] = []) -> PostgresWire.BackendMessage {
    var body = ByteBuffer()
    body.writeInteger(code)
    body.writeBytes(rest)
    return backend("R", Array(body.readableBytesView))
}

private func error(_ code: String, _ message: String) -> PostgresWire.BackendMessage {
    let body = Array("SFATAL".utf8) + [0] + Array("C\(code)".utf8) + [0] + Array("M\(message)".utf8) + [0, 0]
    return backend("E", body)
}

/// The body of a PasswordMessage the machine asked to send.
private func passwordBody(_ action: UpstreamAuthStateMachine.Action) -> [UInt8]? {
    guard case var .sendToServer(buffer) = action, buffer.readInteger(as: UInt8.self) == UInt8(ascii: "p"),
          let length = buffer.readInteger(as: Int32.self), Int(length) == buffer.readableBytes + 4 else { return nil }
    return Array(buffer.readableBytesView)
}

@Suite("The upstream authentication state machine")
struct UpstreamAuthStateMachineTests {
    @Test("A cleartext request is answered with the token")
    func cleartext() {
        var machine = UpstreamAuthStateMachine(user: "kong", password: Secret("tok&en"))
        #expect(passwordBody(machine.received(authentication(3))) == Array("tok&en".utf8) + [0])
    }

    @Test("An MD5 request is answered as libpq does: md5 of (md5 of password+user, hex) + salt")
    func md5() {
        var machine = UpstreamAuthStateMachine(user: "kong", password: Secret("secret"))
        // python3: m=hashlib.md5; 'md5'+m(m(b'secretkong').hexdigest().encode()+bytes([1,2,3,4])).hexdigest()
        let body = passwordBody(machine.received(authentication(5, [1, 2, 3, 4])))
        #expect(body == Array("md5fdac6ab6857d85466754221dad384c6d".utf8) + [0])
    }

    @Test("SCRAM-SHA-256 answers RFC 7677's test vector and checks the server's signature")
    func scramVector() throws {
        var scram = SCRAMClient(password: Secret("pencil"), username: "user", nonce: "rOprNGfwEbeRWgbNEkqO")
        #expect(scram.clientFirstMessage == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        let final = try scram.clientFinalMessage(
            serverFirst: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
        #expect(final == "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
        try scram.verify(serverFinal: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        #expect(throws: SCRAMClient.Failure.self) { try scram.verify(serverFinal: "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=") }
    }

    @Test("SCRAM refuses a nonce that does not extend the client's and an absurd iteration count")
    func scramHostileServer() {
        var scram = SCRAMClient(password: Secret("pencil"), nonce: "abc")
        #expect(throws: SCRAMClient.Failure.self) { try scram.clientFinalMessage(serverFirst: "r=xyz123,s=AAAA,i=4096") }
        #expect(throws: SCRAMClient.Failure.self) { try scram.clientFinalMessage(serverFirst: "r=abc123,s=AAAA,i=100000000") }
    }

    @Test("The SASL exchange is sent as PostgreSQL framing wants it")
    func saslMessages() {
        var machine = UpstreamAuthStateMachine(user: "kong", password: Secret("pencil"), nonce: "rOprNGfwEbeRWgbNEkqO")
        let mechanisms = Array("SCRAM-SHA-256-PLUS".utf8) + [0] + Array("SCRAM-SHA-256".utf8) + [0, 0]
        let initial = passwordBody(machine.received(authentication(10, mechanisms)))
        let first = Array("n,,n=,r=rOprNGfwEbeRWgbNEkqO".utf8)
        #expect(initial == Array("SCRAM-SHA-256".utf8) + [0, 0, 0, 0, UInt8(first.count)] + first)
        let serverFirst = Array("r=rOprNGfwEbeRWgbNEkqOserver,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".utf8)
        let response = passwordBody(machine.received(authentication(11, serverFirst)))
        #expect(response.map { String(decoding: $0, as: UTF8.self).hasPrefix("c=biws,r=rOprNGfwEbeRWgbNEkqOserver,p=") } == true)
        // A wrong server signature ends the handshake.
        guard case .fail(.protocolViolation) = machine.received(authentication(12, Array("v=AAAA".utf8))) else {
            Issue.record("a wrong server signature was accepted")
            return
        }
    }

    @Test("After AuthenticationOk everything is forwarded, the key noted, and ReadyForQuery ends the handshake")
    func afterOk() {
        var machine = UpstreamAuthStateMachine(user: "kong", password: Secret("x"))
        _ = machine.received(authentication(3))
        let ok = authentication(0)
        #expect(machine.received(ok) == .forwardToClient(ok.raw))
        let status = backend("S", Array("TimeZone".utf8) + [0] + Array("UTC".utf8) + [0])
        #expect(machine.received(status) == .forwardToClient(status.raw))
        let key = backend("K", [0, 0, 1, 0, 9, 8, 7, 6])
        #expect(machine.received(key) == .forwardToClient(key.raw))
        let ready = backend("Z", [UInt8(ascii: "I")])
        #expect(machine.received(ready) == .ready(ready.raw, cancelKey: CancelKey(processID: 256, secret: [9, 8, 7, 6])))
    }

    @Test("A class 28 error is a rejected token with the server's reason; others are forwarded as they are")
    func errors() {
        var rejected = UpstreamAuthStateMachine(user: "kong", password: Secret("x"))
        _ = rejected.received(authentication(3))
        #expect(rejected.received(error("28P01", "password authentication failed for user \"kong\""))
            == .fail(.rejected(serverMessage: "password authentication failed for user \"kong\"")))
        var missing = UpstreamAuthStateMachine(user: "kong", password: Secret("x"))
        let noDatabase = error("3D000", "database \"nope\" does not exist")
        guard case let .fail(.serverError(forwarded)) = missing.received(noDatabase) else {
            Issue.record("not forwarded")
            return
        }
        #expect(forwarded.sqlState == "3D000")
        #expect(forwarded.raw == noDatabase.raw)
    }

    @Test("Kerberos, GSSAPI and unknown requests fail the handshake with a reason")
    func unsupported() {
        for code: Int32 in [2, 7, 9, 42] {
            var machine = UpstreamAuthStateMachine(user: "kong", password: Secret("x"))
            guard case .fail(.protocolViolation) = machine.received(authentication(code)) else {
                Issue.record("code \(code) did not fail")
                continue
            }
        }
        var noScram = UpstreamAuthStateMachine(user: "kong", password: Secret("x"))
        guard case .fail(.protocolViolation) = noScram.received(authentication(10, Array("SCRAM-SHA-256-PLUS".utf8) + [0, 0])) else {
            Issue.record("channel binding only was accepted")
            return
        }
    }
}
