import Foundation
import TestSupport

/// A loopback TCP port that accepts connections (the kernel completes the handshake) but never
/// reads or answers: the model of a hung server or a firewall that swallows requests.
final class SilentListener {
    let descriptor: Int32
    let port: Int

    init() throws {
        (descriptor, port) = try loopbackSocket(listening: 16)
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
