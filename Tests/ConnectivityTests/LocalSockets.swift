import Foundation

/// A loopback TCP port that accepts connections (the kernel completes the handshake) but never
/// reads or answers: the model of a hung server or a firewall that swallows requests.
final class SilentListener {
    let descriptor: Int32
    let port: Int

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(descriptor, pointer, length) == 0 && listen(descriptor, 16) == 0
                    && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard bound else {
            close(descriptor)
            throw POSIXError(.EADDRINUSE)
        }
        self.descriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(descriptor) }
}

/// A loopback port where nothing listens: connecting is refused.
func closedPort() throws -> Int {
    try SilentListener().port
}

/// A loopback server that accepts one connection, reads what the client sends first, answers
/// with fixed bytes and keeps the connection open: a server of the wrong kind, or one that
/// refuses TLS.
final class OneAnswerServer {
    private let listener: SilentListener
    private let answer: [UInt8]
    var port: Int { listener.port }

    init(answer: [UInt8]) throws {
        listener = try SilentListener()
        self.answer = answer
        let descriptor = listener.descriptor
        let thread = Thread { [answer] in
            let connection = accept(descriptor, nil, nil)
            guard connection >= 0 else { return }
            var request = [UInt8](repeating: 0, count: 4096)
            _ = recv(connection, &request, request.count, 0)
            _ = answer.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            // Hold the connection until the client hangs up.
            while recv(connection, &request, request.count, 0) > 0 {}
            close(connection)
        }
        thread.start()
    }
}
