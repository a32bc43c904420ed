import ArgumentParser
import CloudAuth
import CredentialAgent
import CredentialModel
import Foundation

/// `credagent get NAME`: one credential from a running agent.
struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Print a credential from the running agent.",
        discussion: """
            --format json prints the agent's JSON; env prints shell assignments (CREDAGENT_USERNAME, \
            CREDAGENT_PASSWORD or CREDAGENT_TOKEN, and the connection fields); pgpass prints a \
            ~/.pgpass line (postgres only). --field prints one field of the JSON alone.
            """)

    /// Output formats.
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case json, env, pgpass
    }

    @Argument(help: "The credential's name.") var name: String
    @OptionGroup var socket: SocketOptions
    @Option(name: .long, help: "Print only this field (e.g. password, username, expires_at, connection.host).")
    var field: String?
    @Option(name: .long, help: "json, env or pgpass.") var format: Format = .json
    @Option(name: .long, help: "Refresh first if fewer seconds than this would remain.") var minValid: Int?

    func run() async throws {
        try await Self.show(name: name, field: field, format: format, minValid: minValid,
                            client: try socket.sequentialClient)
    }

    /// Fetches credential `name` from the agent behind `client` and prints it (its `field` alone,
    /// when given, else in `format`); the same for this command and its plain form
    /// (``PlainCommandLine``).
    static func show(name: String, field: String?, format: Format, minValid: Int?, client: AgentClient) async throws {
        do {
            let body = try await client.credentialJSON(name: name, minValid: minValid)
            if let field {
                guard let value = try Self.field(field, of: body) else {
                    throw ValidationError("the credential has no field '\(field)'")
                }
                print(value)
                return
            }
            // The same text as a sink of that format holds, refused where a sink would be.
            let fields = try CredentialFields(json: body)
            let sinkFormat: SinkFormat? = switch format {
            case .json: nil
            case .env: .env
            case .pgpass: .pgpass
            }
            if let problem = sinkFormat?.problem(with: fields) { throw SinkError(message: problem) }
            switch format {
            case .json: print(String(decoding: body, as: UTF8.self))
            case .env: print(SinkFormat.env.render(json: body, fields: fields).reveal(), terminator: "")
            case .pgpass:
                let credential = try JSONDecoder().decode(ServedCredential.self, from: Data(body))
                guard credential.kind == .postgres else { throw ValidationError("--format pgpass is for postgres credentials") }
                print(SinkFormat.pgpass.render(json: body, fields: fields).reveal(), terminator: "")
            }
        } catch let error as ValidationError {
            throw error
        } catch {
            throw AgentExit.report(error)
        }
    }

    /// A field of the JSON by dotted path, as text (strings bare, other values as JSON).
    ///
    /// Read with `JSONSerialization`, not a `Decodable` type: the first decoding of a new
    /// `Decodable` or `CodingKey` type has the Swift runtime check its conformances by walking all
    /// of the binary's conformance records (1.4 of `get`'s 3.0 million instructions; this reading
    /// takes 1.0 million).
    static func field(_ path: String, of body: [UInt8]) throws -> String? {
        var value: Any? = try JSONSerialization.jsonObject(with: Data(body))
        for key in path.split(separator: ".") {
            guard let object = value as? [String: Any] else { return nil }
            value = object[String(key)]
        }
        switch value {
        case nil, is NSNull: return nil
        case let text as String: return text
        case let number as NSNumber:
            // JSON's true and false come as numbers of the C type char.
            if number.objCType.pointee == CChar(UInt8(ascii: "c")) { return number.boolValue ? "true" : "false" }
            let double = number.doubleValue
            return double.rounded() == double && abs(double) < 1e15 ? String(Int(double)) : String(double)
        case is [String: Any]: throw ValidationError("'\(path)' is an object; name one of its fields, e.g. \(path).host")
        default: return nil
        }
    }
}
