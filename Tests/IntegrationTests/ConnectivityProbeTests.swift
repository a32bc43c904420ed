import CloudAuth
import Connectivity
import CredentialModel
import Foundation
import Testing

/// Asserts that no text of the report holds the secret.
private func expectNoSecret(_ report: ProbeReport, _ secrets: Secret..., sourceLocation: SourceLocation = #_sourceLocation) {
    let texts = [report.failure?.message ?? "", report.failure?.remedy ?? "", ProbeReport.table([report]),
                 ProbeReport.json([report])]
    for secret in secrets {
        for text in texts {
            #expect(!text.contains(secret.reveal()), "the report shows a secret", sourceLocation: sourceLocation)
        }
    }
}

@Suite("PostgresProbe against the real PostgreSQL peer",
       .enabled(if: PostgresPeer.available, "needs scripts/peers/postgres (run scripts/test)"))
struct PostgresProbeTests {
    let user = uniqueUser("kong")
    let token = fakeIAMToken()

    private func target(_ change: (inout PostgresTarget) -> Void = { _ in }) -> PostgresTarget {
        var target = PostgresTarget(host: PostgresPeer.host, port: PostgresPeer.port, database: PostgresPeer.database,
                                    user: user, password: token, sslmode: "verify-full", caFile: PostgresPeer.caFile)
        change(&target)
        return target
    }

    private func probe(_ change: (inout PostgresTarget) -> Void = { _ in }) async throws -> ProbeReport {
        try await PostgresPeer.createRole(user, password: token)
        let report = await PostgresProbe(name: "orders-db", target: target(change)).run()
        expectNoSecret(report, token)
        return report
    }

    @Test func connectsOverVerifiedTLSWithTheIssuedToken() async throws {
        let report = try await probe()
        #expect(report.ok, "\(report.failure?.description ?? "")")
        #expect(report.detail("user") == user)
        #expect(report.detail("server_version")?.first?.isNumber == true)
        #expect(report.detail("tls")?.hasPrefix("TLSv1.") == true)
        #expect(report.steps.map(\.name) == ["connect", "query"])
        #expect(report.steps.allSatisfy { $0.seconds > 0 })
    }

    @Test func connectsOverPlainTCPWhereTheServerAllowsIt() async throws {
        let report = try await probe { $0.sslmode = "disable" }
        #expect(report.ok, "\(report.failure?.description ?? "")")
        #expect(report.detail("tls") == "off")
    }

    @Test func aWrongTokenIsRejected() async throws {
        let wrong = fakeIAMToken()
        let report = try await probe { $0.password = wrong }
        #expect(report.failure?.cause == .rejected)
        #expect(report.failure?.message.contains("password authentication failed") == true)
        expectNoSecret(report, wrong)
    }

    @Test func aServerRequiringTLSRefusesPlainTCP() async throws {
        let report = try await probe {
            $0.sslmode = "disable"
            $0.database = PostgresPeer.tlsOnlyDatabase
        }
        #expect(report.failure?.cause == .tlsRequired)
        #expect(report.failure?.remedy?.contains("sslmode") == true)
    }

    @Test func aCertificateFromAnotherCAIsNotTrusted() async throws {
        let report = try await probe { $0.caFile = PostgresPeer.otherCAFile }
        #expect(report.failure?.cause == .untrustedCertificate)
        #expect(report.failure?.remedy?.contains("ca_file") == true)
    }

    @Test func aHostNameTheCertificateDoesNotNameIsRefused() async throws {
        let report = try await probe {
            $0.host = "wrong-name.invalid"
            $0.hostAddress = "127.0.0.1"
        }
        #expect(report.failure?.cause == .hostnameMismatch)
        #expect(report.failure?.message.contains("wrong-name.invalid") == true)
    }

    @Test func aMissingDatabaseIsNamed() async throws {
        let report = try await probe { $0.database = "no_such_db" }
        #expect(report.failure?.cause == .databaseMissing)
        #expect(report.failure?.message.contains("no_such_db") == true)
    }
}

@Suite("RedisProbe against the real Redis peer",
       .enabled(if: RedisPeer.available, "needs scripts/peers/redis (run scripts/test)"))
struct RedisProbeTests {
    let user = uniqueUser("kong")
    let token = fakeIAMToken()

    private func probe(_ change: (inout RedisTarget) -> Void = { _ in }) async throws -> ProbeReport {
        try await RedisPeer.createUser(user, password: token)
        var target = RedisTarget(host: RedisPeer.host, port: RedisPeer.tlsPort, user: user, password: token,
                                 tls: true, caFile: RedisPeer.caFile, ioTimeout: 3)
        change(&target)
        let report = await RedisProbe(name: "sessions", target: target).run()
        expectNoSecret(report, token)
        return report
    }

    @Test func authenticatesOverVerifiedTLSWithTheIssuedToken() async throws {
        let report = try await probe()
        #expect(report.ok, "\(report.failure?.description ?? "")")
        #expect(report.detail("server_version")?.hasPrefix("7.") == true)
        #expect(report.detail("tls")?.hasPrefix("TLSv1.") == true)
        #expect(report.detail("user") == user)
        #expect(report.steps.map(\.name) == ["connect", "tls", "auth", "ping"])
    }

    @Test func verifiesAnIPAddressAgainstTheCertificate() async throws {
        let report = try await probe { $0.host = "127.0.0.1" }
        #expect(report.ok, "\(report.failure?.description ?? "")")
    }

    @Test func authenticatesOverPlainTCP() async throws {
        let report = try await probe {
            $0.port = RedisPeer.port
            $0.tls = false
        }
        #expect(report.ok, "\(report.failure?.description ?? "")")
        #expect(report.detail("tls") == "off")
        #expect(report.steps.map(\.name) == ["connect", "auth", "ping"])
    }

    @Test func aWrongTokenIsRejected() async throws {
        let wrong = fakeIAMToken()
        let report = try await probe { $0.password = wrong }
        #expect(report.failure?.cause == .rejected)
        #expect(report.failure?.message.contains("WRONGPASS") == true)
        expectNoSecret(report, wrong)
    }

    @Test func noPasswordMeetsNOAUTH() async throws {
        let report = try await probe {
            $0.user = nil
            $0.password = nil
        }
        #expect(report.failure?.cause == .authRequired)
        #expect(report.failure?.message.contains("NOAUTH") == true)
    }

    @Test func tlsToThePlainPortIsRecognised() async throws {
        let report = try await probe {
            $0.port = RedisPeer.port
            $0.ioTimeout = 1
        }
        #expect(report.failure?.cause == .tlsUnavailable)
        #expect(report.failure?.remedy?.contains("TLS") == true)
    }

    @Test func plainTCPToTheTLSPortIsRecognised() async throws {
        let report = try await probe { $0.tls = false }
        #expect(report.failure?.cause == .closed)
        #expect(report.failure?.remedy?.contains("tls") == true)
    }

    @Test func aCertificateFromAnotherCAIsNotTrusted() async throws {
        let report = try await probe { $0.caFile = RedisPeer.otherCAFile }
        #expect(report.failure?.cause == .untrustedCertificate)
    }

    @Test func aServerNameTheCertificateDoesNotNameIsRefused() async throws {
        let report = try await probe { $0.serverName = "wrong-name.invalid" }
        #expect(report.failure?.cause == .hostnameMismatch)
    }
}

@Suite("VaultProbe against the real OpenBao peer",
       .enabled(if: BaoAdmin.available, "needs scripts/peers/openbao (run scripts/test)"))
struct VaultProbeTests {
    let bao = BaoAdmin.fromEnvironment()!

    @Test func looksUpAValidToken() async throws {
        let created = try await bao.call("POST", "auth/token/create", ["policies": ["default"], "ttl": "10m",
                                                                       "display_name": "gateway"])
        let token = Secret(((created["auth"] as? [String: Any])?["client_token"] as? String) ?? "")
        let report = await VaultProbe(name: "vault", endpoint: VaultEndpoint(address: bao.address), token: token).run()
        #expect(report.ok, "\(report.failure?.description ?? "")")
        #expect(report.detail("display_name") == "token-gateway")
        #expect(report.detail("policies") == "default")
        let ttl = Int(report.detail("ttl")?.dropLast() ?? "") ?? 0
        #expect((300...600).contains(ttl), "a 10-minute token has most of its life left")
        expectNoSecret(report, token)
    }

    @Test func anUnknownTokenIsRejectedWithVaultsOwnWords() async throws {
        let token = Secret("s.\(Encoding.hex(Digest.randomBytes(12)))")
        let report = await VaultProbe(name: "vault", endpoint: VaultEndpoint(address: bao.address), token: token).run()
        #expect(report.failure?.cause == .rejected)
        #expect(report.failure?.message.contains("permission denied") == true)
        expectNoSecret(report, token)
    }

    @Test(.enabled(if: Peers.env("CREDAGENT_TEST_BAO_TLS_ADDR") != nil, "needs OpenBao's TLS listener"))
    func verifiesVaultsCertificate() async throws {
        let address = Peers.env("CREDAGENT_TEST_BAO_TLS_ADDR")!
        let trusted = VaultEndpoint(address: address, tls: TLSOptions(caFile: Peers.env("CREDAGENT_TEST_BAO_TLS_CA_FILE")))
        let ok = await VaultProbe(name: "vault", endpoint: trusted, token: bao.rootToken).run()
        #expect(ok.ok, "\(ok.failure?.description ?? "")")
        #expect(ok.detail("ttl") == "never expires")

        let untrusted = VaultEndpoint(address: address, tls: TLSOptions(caFile: Peers.env("CREDAGENT_TEST_OTHER_CA_FILE")))
        let failed = await VaultProbe(name: "vault", endpoint: untrusted, token: bao.rootToken).run()
        #expect(failed.failure?.cause == .untrustedCertificate)
        expectNoSecret(failed, bao.rootToken)

        // The check verifies the name the agent's config gives (`tls_server_name`), not the address's host.
        func check(serverName: String) async -> ProbeReport {
            await ConnectivityCheck(name: "vault", secret: bao.rootToken, connection: .vault(.init(
                address: address, caFile: Peers.env("CREDAGENT_TEST_BAO_TLS_CA_FILE"), tlsServerName: serverName))).run()
        }
        #expect(await check(serverName: "localhost").ok)
        #expect(await check(serverName: "vault.wrong.invalid").failure?.cause == .untrustedCertificate)
    }
}
