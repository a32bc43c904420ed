import CloudAuth
import CredentialModel
import Foundation
import Testing

@Suite struct CredentialNameTests {
    @Test("names follow [a-z0-9][a-z0-9._-]{0,62}",
          arguments: ["a", "0", "orders-db", "a.b_c-d", String(repeating: "z", count: 63)])
    func validNames(_ text: String) {
        #expect(CredentialName(text)?.rawValue == text)
    }

    @Test("anything else is refused",
          arguments: ["", "Orders", "-a", ".a", "a/b", "a b", "é", String(repeating: "z", count: 64)])
    func invalidNames(_ text: String) {
        #expect(CredentialName(text) == nil)
        #expect(!CredentialName.isValid(text))
    }

    @Test func anInvalidNameDoesNotDecode() throws {
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([CredentialName].self, from: Data(#"["A"]"#.utf8)) }
        #expect(try JSONDecoder().decode([CredentialName].self, from: Data(#"["a"]"#.utf8)) == [CredentialName("a")!])
    }
}

@Suite struct ServedCredentialTests {
    private let times = (issued: Date(timeIntervalSince1970: 1_795_860_000), expires: Date(timeIntervalSince1970: 1_795_860_900),
                         refresh: Date(timeIntervalSince1970: 1_795_860_594))

    private func postgres() -> ServedCredential {
        ServedCredential(
            name: CredentialName("orders-db")!, provider: .aws, version: 3, username: "kong", secret: Secret("tok\"en"),
            issuedAt: times.issued, expiresAt: times.expires, refreshAt: times.refresh,
            connection: .postgres(.init(host: "db.example.com", port: 5432, database: "kong", sslmode: .verifyFull)))
    }

    @Test("a postgres credential is written in the documented field order")
    func postgresJSON() {
        let text = String(decoding: postgres().json.bytes, as: UTF8.self)
        #expect(text == #"{"name":"orders-db","kind":"postgres","provider":"aws","version":3,"username":"kong","#
            + #""password":"tok\"en","issued_at":"2026-11-28T10:00:00Z","expires_at":"2026-11-28T10:15:00Z","#
            + #""refresh_at":"2026-11-28T10:09:54Z","#
            + #""connection":{"host":"db.example.com","port":5432,"database":"kong","sslmode":"verify-full"}}"#)
    }

    @Test("a Vault credential carries token and its lease, no username or password")
    func vaultJSONReadsBack() throws {
        let served = ServedCredential(
            name: CredentialName("vault")!, provider: .gcp, version: 1, username: nil, secret: Secret("hvs.x"),
            attributes: ["accessor": .string("acc"), "renewable": .bool(true), "lease_duration": .int(60)],
            issuedAt: times.issued, expiresAt: times.expires, refreshAt: times.refresh,
            connection: .vault(.init(address: "https://vault:8200", caFile: "/ca.pem", tlsServerName: "vault.internal")))
        let text = String(decoding: served.json.bytes, as: UTF8.self)
        #expect(text.contains(#""version":1,"token":"hvs.x","accessor":"acc","lease_duration":60,"renewable":true,"issued_at""#))
        #expect(!text.contains("password") && !text.contains("username"))
        #expect(text.hasSuffix(#""connection":{"address":"https://vault:8200","namespace":null,"ca_file":"/ca.pem","#
            + #""tls_server_name":"vault.internal"}}"#))

        let decoded = try JSONDecoder().decode(ServedCredential.self, from: Data(served.json.bytes))
        #expect(decoded.secret.reveal() == "hvs.x")
        #expect(decoded.attributes == served.attributes)
        #expect(decoded.connection == served.connection)
        #expect(decoded.expiresAt == times.expires)
    }

    @Test("Codable through Foundation's coders gives back the same credential")
    func codableRoundTrip() throws {
        let original = postgres()
        let decoded = try JSONDecoder().decode(ServedCredential.self, from: JSONEncoder().encode(original))
        #expect(decoded.name == original.name && decoded.version == 3 && decoded.username == "kong")
        #expect(decoded.secret == original.secret)
        #expect(decoded.connection == original.connection)
        #expect(decoded.refreshAt == times.refresh)
    }

    @Test("a proxy's listen address is written last and read back for each listener kind")
    func proxyListenRoundTrip() throws {
        var served = postgres()
        served.proxy = .unixDirectory("/run/credagent/orders-db")
        let text = String(decoding: served.json.bytes, as: UTF8.self)
        #expect(text.hasSuffix(#""sslmode":"verify-full"},"proxy":{"listen":"unix:/run/credagent/orders-db"}}"#))
        for address in [ProxyListenAddress.unixDirectory("/run/p"), .loopbackTCP(host: "127.0.0.1", port: 15432),
                        .loopbackTCP(host: "::1", port: 15432)] {
            served.proxy = address
            #expect(try JSONDecoder().decode(ServedCredential.self, from: Data(served.json.bytes)).proxy == address)
        }
        #expect(try JSONDecoder().decode(ServedCredential.self, from: Data(postgres().json.bytes)).proxy == nil)
        #expect(ProxyListenAddress(listen: "unix:/run/s.sock", socketIsDirectory: false) == .unixSocket("/run/s.sock"))
        #expect(ProxyListenAddress(listen: "unix:relative", socketIsDirectory: true) == nil)
        #expect(ProxyListenAddress(listen: "127.0.0.1", socketIsDirectory: true) == nil)
        #expect(ProxyListenAddress(listen: ":80", socketIsDirectory: true) == nil)
    }

    @Test("a redis connection without a host is written as null and read back as nil")
    func redisWithoutHost() throws {
        let connection = CredentialConnection.redis(.init(host: nil, port: 6379, tls: true))
        #expect(connection.json == .object([("host", .null), ("port", .int(6379)), ("tls", .bool(true))]))
        #expect(connection.endpoint == "-")
    }

    @Test("an answer whose connection lacks what its kind needs does not decode")
    func incompleteConnection() {
        var text = String(decoding: postgres().json.bytes, as: UTF8.self)
        text = text.replacingOccurrences(of: #""sslmode":"verify-full""#, with: #""sslmode":"sometimes""#)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ServedCredential.self, from: Data(text.utf8)) }
    }
}
