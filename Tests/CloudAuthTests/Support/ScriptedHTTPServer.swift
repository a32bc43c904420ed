import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A loopback TCP server for HTTP client tests that answers every connection with a fixed
/// behaviour: canned raw bytes, or silence (to provoke timeouts). It records each request (head and
/// the body its Content-Length announces).
final class ScriptedHTTPServer: @unchecked Sendable {
    enum Behaviour: Sendable {
        /// Writes these bytes after reading the request head, then closes.
        case respond(String)
        /// Accepts and reads, never answers.
        case stall
    }

    let port: Int
    private let listener: Int32
    private let behaviour: Behaviour
    private let lock = NSLock()
    private var heads: [String] = []

    init(_ behaviour: Behaviour) throws {
        self.behaviour = behaviour
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 16) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        guard bound else {
            close(listener)
            throw POSIXError(.EADDRINUSE)
        }
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    deinit { close(listener) }

    var url: String { "http://127.0.0.1:\(port)" }

    /// The requests received so far, head and body.
    var requests: [String] { lock.withLock { heads } }

    /// The body of the `index`th request.
    func body(_ index: Int) -> String? {
        let all = requests
        guard index < all.count, let range = all[index].range(of: "\r\n\r\n") else { return nil }
        return String(all[index][range.upperBound...])
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 65536)
            var received: [UInt8] = []
            func complete() -> Bool {
                let text = String(decoding: received, as: UTF8.self)
                guard let end = text.range(of: "\r\n\r\n") else { return false }
                let length = text[..<end.lowerBound].split(separator: "\r\n")
                    .first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                return text[end.upperBound...].utf8.count >= length
            }
            while !complete() {
                let count = read(client, &buffer, buffer.count)
                if count <= 0 { break }
                received.append(contentsOf: buffer[0..<count])
            }
            let head = String(decoding: received, as: UTF8.self)
            lock.withLock { heads.append(head) }
            switch behaviour {
            case .respond(let text):
                _ = Array(text.utf8).withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                close(client)
            case .stall:
                // Keep the connection open until the client gives up.
                while read(client, &buffer, buffer.count) > 0 {}
                close(client)
            }
        }
    }
}
