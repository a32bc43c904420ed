internal import CLibPQ
import Foundation

/// One libpq connection (`PGconn`), closed when the object goes away.
///
/// Every call blocks: use it only on a ``BlockingExecutor`` thread, from one thread at a time.
final class PostgresConnection {
    private let handle: OpaquePointer

    /// Connects with keyword/value parameters (`PQconnectdbParams`, no conninfo string is ever
    /// built, so no value can inject another). The result may be a failed connection: check
    /// ``isConnected`` and ``errorMessage``.
    init?(parameters: [(keyword: String, value: String)]) {
        let keywords = parameters.map { strdup($0.keyword) }
        let values = parameters.map { strdup($0.value) }
        defer {
            keywords.forEach { free($0) }
            // The password is among the values: wipe the copies before freeing them.
            values.forEach { value in
                if let value { memset(value, 0, strlen(value)) }
                free(value)
            }
        }
        let keywordArray = keywords.map { UnsafePointer($0) } + [nil]
        let valueArray = values.map { UnsafePointer($0) } + [nil]
        guard let handle = PQconnectdbParams(keywordArray, valueArray, 0) else { return nil }
        self.handle = handle
    }

    deinit { PQfinish(handle) }

    var isConnected: Bool { PQstatus(handle) == CONNECTION_OK }

    /// The connected socket; -1 when there is none.
    var socket: Int32 { PQsocket(handle) }

    /// libpq's description of the last failure, on one line.
    var errorMessage: String { String(cString: PQerrorMessage(handle)).singleLine }

    /// A parameter the server reported at startup (`server_version`, `server_encoding`, ...).
    func parameterStatus(_ name: String) -> String? {
        PQparameterStatus(handle, name).map { String(cString: $0) }
    }

    var tlsInUse: Bool { PQsslInUse(handle) == 1 }

    /// A TLS attribute of the connection (`protocol`, `cipher`), when TLS is in use.
    func tlsAttribute(_ name: String) -> String? {
        PQsslAttribute(handle, name).map { String(cString: $0) }
    }

    /// Runs a fixed statement with no parameters and returns the first column of the first row.
    /// Throws libpq's or the server's message when it fails.
    func queryFirstValue(_ sql: StaticString) throws(PostgresQueryError) -> String? {
        guard let result = PQexec(handle, sql.description) else { throw PostgresQueryError(message: errorMessage) }
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_TUPLES_OK else {
            throw PostgresQueryError(message: String(cString: PQresultErrorMessage(result)).singleLine)
        }
        guard PQntuples(result) > 0, PQgetisnull(result, 0, 0) == 0 else { return nil }
        return String(cString: PQgetvalue(result, 0, 0))
    }
}

/// A statement failed after the connection was made.
struct PostgresQueryError: Error {
    var message: String
}
