import CloudAuth
import Connectivity
import CredentialModel
import Foundation
import Testing

@Suite struct ProbeReportTests {
    private let passed = ProbeReport(
        name: "orders-db", kind: "postgres", provider: "aws", endpoint: "db:5432",
        steps: [ProbeStep("connect", seconds: 0.0123), ProbeStep("query", seconds: 0.0007)],
        details: [ProbeDetail("server_version", "15.20"), ProbeDetail("tls", "TLSv1.3")])
    private let failed = ProbeReport(
        name: "sessions", kind: "redis", endpoint: "cache:6379", steps: [ProbeStep("connect", seconds: 0.5)],
        failure: ProbeFailure(.rejected, "AUTH was refused: WRONGPASS", remedy: "check the token"))

    @Test func rendersAnAlignedTableWithHints() {
        let table = ProbeReport.table([passed, failed])
        #expect(table == """
            NAME       KIND      PROVIDER  RESULT           LATENCY   DETAIL
            orders-db  postgres  aws       ok               13.0 ms   server_version=15.20 tls=TLSv1.3
            sessions   redis     -         FAIL (rejected)  500.0 ms  AUTH was refused: WRONGPASS
            remedy: sessions: check the token

            """)
    }

    @Test func rendersJSONWithLatenciesPerStep() throws {
        let data = Data(ProbeReport.json([passed, failed]).utf8)
        let document = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(document["ok"] as? Bool == false)
        let checks = try #require(document["checks"] as? [[String: Any]])
        #expect(checks.count == 2)
        let first = checks[0]
        #expect(first["name"] as? String == "orders-db")
        #expect(first["ok"] as? Bool == true)
        #expect(first["failure"] is NSNull)
        let latency = try #require(first["latency_ms"] as? [String: Double])
        #expect(latency == ["connect": 12.3, "query": 0.7, "total": 13.0])
        #expect((first["details"] as? [String: String])?["tls"] == "TLSv1.3")
        let failure = try #require(checks[1]["failure"] as? [String: Any])
        #expect(failure["cause"] as? String == "rejected")
        #expect(failure["remedy"] as? String == "check the token")
        #expect(checks[1]["provider"] is NSNull)
    }
}

@Suite struct ConnectivityCheckTests {
    @Test func aCredentialWithoutItsConnectionFieldsIsInvalidInput() async {
        let report = await ConnectivityCheck(name: "orders-db", provider: .aws, username: "kong", secret: Secret("token"),
                                             connection: .postgres(.init(host: "db", port: 5432))).run()
        #expect(report.failure?.cause == .invalidInput)
        #expect(report.failure?.message.contains("database") == true)
        #expect(report.provider == "aws")
        #expect(report.endpoint == "db:5432")
    }

    @Test func anUnknownKindHasNoCheck() async {
        let answer = """
            {"name":"x","kind":"mysql","provider":"aws","version":1,"username":"u","password":"token",
             "issued_at":"2026-11-22T10:00:00Z","expires_at":"2026-11-22T10:15:00Z","refresh_at":"2026-11-22T10:09:54Z",
             "connection":{"host":"db","port":3306}}
            """
        let report = await ConnectivityCheck.run(answer: Array(answer.utf8), name: "x")
        #expect(report.failure?.cause == .invalidInput)
        #expect(report.failure?.remedy?.contains("postgres, redis and vault") == true)
    }

    @Test func theProviderIsCarriedIntoTheProbesReport() async throws {
        let report = await ConnectivityCheck(name: "cache", provider: .gcp, secret: Secret("token"),
                                             connection: .redis(.init(host: "127.0.0.1", port: try closedPort(), tls: false))).run()
        #expect(report.kind == "redis")
        #expect(report.provider == "gcp")
        #expect(report.failure?.cause == .unreachable)
    }
}
