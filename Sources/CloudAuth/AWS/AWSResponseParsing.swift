import Foundation

/// Readers for what AWS identity endpoints answer: the credential JSON of IMDS and container
/// endpoints, STS's XML, and their timestamps.
enum AWSResponseParsing {
    /// Parses the JSON credential document that IMDS and the ECS/EKS container endpoints serve:
    /// `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration` (IMDS adds `Code`).
    static func credentialJSON(_ body: [UInt8], source: String, label: String) throws -> AWSCredentials {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw CloudAuthError(.malformedResponse, source: source, "the answer is not a JSON object")
        }
        if let code = object["Code"] as? String, code != "Success" {
            let message = (object["Message"] as? String).map(UpstreamText.excerpt) ?? "no message"
            throw CloudAuthError(.rejected, source: source,
                                 "the endpoint reported \(UpstreamText.code(code) ?? "an error"): \(message)")
        }
        guard let accessKey = object["AccessKeyId"] as? String, !accessKey.isEmpty,
              let secret = object["SecretAccessKey"] as? String, !secret.isEmpty else {
            throw CloudAuthError(.malformedResponse, source: source,
                                 "the answer lacks AccessKeyId or SecretAccessKey (truncated or not a credential document)")
        }
        var expiration: Date?
        if let text = object["Expiration"] as? String {
            guard let date = Timestamp.parse(text) else {
                throw CloudAuthError(.malformedResponse, source: source, "Expiration '\(UpstreamText.excerpt(text))' is not an ISO 8601 time")
            }
            expiration = date
        }
        let token = (object["Token"] as? String).flatMap { $0.isEmpty ? nil : Secret($0) }
        return AWSCredentials(accessKeyID: accessKey, secretAccessKey: Secret(secret), sessionToken: token,
                              expiration: expiration, source: label)
    }

    /// The text of the first `<name>` element in `xml`, entities decoded; nil when absent.
    static func xmlText(_ xml: String, _ name: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"),
              let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex) else { return nil }
        return decodeEntities(String(xml[open.upperBound..<close.lowerBound]))
    }

    private static func decodeEntities(_ text: String) -> String {
        guard text.contains("&") else { return text }
        var out = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { break }
            let entity = rest[rest.index(after: amp)..<semi]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                let scalar = entity.hasPrefix("#x") ? UInt32(entity.dropFirst(2), radix: 16)
                    : entity.hasPrefix("#") ? UInt32(entity.dropFirst(), radix: 10) : nil
                if let scalar, let character = Unicode.Scalar(scalar) { out.unicodeScalars.append(character) }
                else { out += rest[amp...semi] }
            }
            rest = rest[rest.index(after: semi)...]
        }
        return out + rest
    }
}
