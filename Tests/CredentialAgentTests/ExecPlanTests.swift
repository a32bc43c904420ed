import CredentialModel
import Foundation
import Testing
@testable import CredentialAgent

private func usage(_ environment: [String], _ onRotation: String = "none") -> String {
    do {
        _ = try ExecPlan(environment: environment, onRotation: onRotation)
        return ""
    } catch {
        return error.message
    }
}

@Suite struct ExecPlanTests {
    @Test func bindingsNameAVariableACredentialAndAField() throws {
        let plan = try ExecPlan(environment: ["PGPASSWORD=orders-db.password", "HOST=orders.db.connection.host",
                                              "V=a.b.version", "PW=orders-db.password"], onRotation: "signal:hup")
        #expect(plan.bindings == [
            .init(variable: "PGPASSWORD", credential: "orders-db", field: "password"),
            .init(variable: "HOST", credential: "orders.db", field: "connection.host"),
            .init(variable: "V", credential: "a.b", field: "version"),
            .init(variable: "PW", credential: "orders-db", field: "password"),
        ])
        #expect(plan.credentials == ["orders-db", "orders.db", "a.b"])
        #expect(plan.policy == .signal(number: SIGHUP, name: "HUP"))
        #expect(try ExecPlan(environment: ["A=x.token"], onRotation: "restart").policy == .restart)
    }

    @Test func usageErrorsSayWhatToWrite() {
        #expect(usage([]) == "give at least one --env VAR=NAME.FIELD, e.g. --env PGPASSWORD=orders-db.password")
        #expect(usage(["PGPASSWORD"]) == "--env 'PGPASSWORD' has no '='; write --env VAR=NAME.FIELD, e.g. --env PGPASSWORD=orders-db.password")
        #expect(usage(["1X=a.password"]).contains("'1X' is not a variable name"))
        #expect(usage(["X=orders-db"]) == "--env 'X=orders-db' names no field; write --env VAR=NAME.FIELD, e.g. --env PGPASSWORD=orders-db.password")
        #expect(usage(["X=Orders.password"]).contains("'Orders' is not a credential name"))
        #expect(usage(["X=a.pasword"]).hasPrefix("--env 'X=a.pasword': 'pasword' is not a credential field (fields: name, kind"))
        #expect(usage(["X=a.connection.password"]).contains("'connection.password' is not a credential field"))
        #expect(usage(["X=a.password", "X=b.password"]) == "--env X is given twice; give each variable once")
        #expect(usage(["X=a.password"], "reload") == "--on-rotation 'reload' is not restart, none or signal:NAME (NAME one of HUP, USR1, USR2, INT, TERM, QUIT, WINCH, ALRM)")
    }

    @Test func variablesComeFromEachCredentialsFields() throws {
        let plan = try ExecPlan(environment: ["PW=db.password", "DB=db.database", "T=vault.token"], onRotation: "none")
        let db = try CredentialFields(json: Array(#"{"kind":"postgres","version":2,"password":"s3cret","connection":{"host":"h","database":null}}"#.utf8))
        let vault = try CredentialFields(json: Array(#"{"kind":"vault","token":"hvs.x","connection":{"address":"https://v"}}"#.utf8))
        #expect(try plan.variables(["db": db, "vault": vault]) == ["PW": "s3cret", "DB": "", "T": "hvs.x"])

        let wrong = try ExecPlan(environment: ["T=db.token"], onRotation: "none")
        #expect(throws: ExecPlan.UsageError.self) { try wrong.variables(["db": db]) }
        do {
            _ = try wrong.variables(["db": db])
        } catch {
            #expect(error.message.hasPrefix("--env T=db.token: db is a postgres credential without a field token (its fields: name, kind"))
        }
    }
}
