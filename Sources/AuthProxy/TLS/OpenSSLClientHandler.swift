internal import COpenSSL
import CloudAuth
import Foundation
import NIOCore

/// How the proxy checks the upstream server's certificate, from libpq's `sslmode`.
public enum UpstreamTLSMode: String, Sendable, Equatable {
    /// No TLS (loopback servers only; the config refuses it elsewhere).
    case disable
    /// TLS, the certificate not checked (`prefer`, `require`).
    case encryptOnly
    /// TLS, the chain checked against the CA (`verify-ca`).
    case verifyChain
    /// TLS, the chain and the server name checked (`verify-full`, the default).
    case verifyFull

    /// The mode for a libpq `sslmode`; verify-full for anything unknown.
    public init(sslmode: String?) {
        switch sslmode {
        case "disable", "allow": self = .disable
        case "prefer", "require": self = .encryptOnly
        case "verify-ca": self = .verifyChain
        default: self = .verifyFull
        }
    }
}

/// A problem with TLS to the upstream server, in words fit for the client (no secrets involved).
public struct UpstreamTLSError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// An OpenSSL client context (`SSL_CTX`) shared by a proxy's upstream connections: TLS 1.2 or
/// later, the CA bundle loaded once.
public final class UpstreamTLSContext: Sendable {
    nonisolated(unsafe) let handle: OpaquePointer
    public let mode: UpstreamTLSMode

    /// Loads `caFile` (the system store when nil). Throws naming the file when it cannot be read.
    public init(mode: UpstreamTLSMode, caFile: String?) throws {
        guard let handle = SSL_CTX_new(TLS_client_method()) else {
            throw UpstreamTLSError(description: "OpenSSL could not create a TLS context: \(openSSLErrorText())")
        }
        self.handle = handle
        self.mode = mode
        // SSL_CTX_set_min_proto_version is a macro over SSL_CTX_ctrl.
        SSL_CTX_ctrl(handle, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        SSL_CTX_set_verify(handle, mode == .encryptOnly ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nil)
        if let caFile {
            guard SSL_CTX_load_verify_locations(handle, caFile, nil) == 1 else {
                throw UpstreamTLSError(description: "CA file \(caFile) could not be loaded: \(openSSLErrorText()); set ca_file to a readable PEM bundle")
            }
        } else {
            SSL_CTX_set_default_verify_paths(handle)
        }
    }

    deinit { SSL_CTX_free(handle) }
}

/// Fired inbound once the TLS handshake has completed.
struct TLSHandshakeCompleted {}

/// TLS for an upstream connection over OpenSSL memory buffers, as a NIO handler: ciphertext from
/// the network goes into one BIO, plaintext comes out of `SSL_read`; plaintext written is
/// encrypted by `SSL_write` and the ciphertext taken out of the other BIO. The handshake starts
/// when the handler is added to an active channel; writes before it completes wait.
///
/// Memory stays bounded by the channel's own backpressure: every read's ciphertext is consumed
/// at once, and every write's ciphertext is handed to the channel with the write's promise.
final class OpenSSLClientHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let context: UpstreamTLSContext
    private let serverName: String
    private var session: OpaquePointer?
    private var incoming: OpaquePointer?
    private var outgoing: OpaquePointer?
    private var handshakeDone = false
    private var failed = false
    private var waitingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    /// Plaintext records are at most 16 KB.
    private static let readChunk = 16 * 1024

    init(context: UpstreamTLSContext, serverName: String) {
        self.context = context
        self.serverName = serverName
    }

    deinit {
        if let session { SSL_free(session) }
    }

    func handlerAdded(context channelContext: ChannelHandlerContext) {
        guard let session = SSL_new(context.handle),
              let incoming = BIO_new(BIO_s_mem()), let outgoing = BIO_new(BIO_s_mem()) else {
            fail(channelContext, "OpenSSL could not create a session: \(openSSLErrorText())")
            return
        }
        SSL_set_bio(session, incoming, outgoing)
        self.session = session
        self.incoming = incoming
        self.outgoing = outgoing
        if context.mode == .verifyFull {
            // Without the expected name OpenSSL checks only the chain.
            guard SSL_set1_host(session, serverName) == 1 else {
                fail(channelContext, "'\(serverName)' cannot be checked against a certificate")
                return
            }
        }
        if !Self.isIPAddress(serverName) { credagent_SSL_set_tlsext_host_name(session, serverName) }
        if channelContext.channel.isActive { handshake(channelContext) }
    }

    func channelActive(context: ChannelHandlerContext) {
        handshake(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed, let incoming else { return }
        let ciphertext = unwrapInboundIn(data)
        ciphertext.withUnsafeReadableBytes { bytes in
            _ = BIO_write(incoming, bytes.baseAddress, Int32(bytes.count))
        }
        if !handshakeDone {
            handshake(context)
            guard handshakeDone else { return }
        }
        readPlaintext(context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !handshakeDone, !failed {
            failed = true
            context.fireErrorCaught(UpstreamTLSError(description: "the server closed the connection during the TLS handshake"))
        }
        failWaitingWrites(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let plaintext = unwrapOutboundIn(data)
        guard handshakeDone else {
            waitingWrites.append((plaintext, promise))
            return
        }
        encrypt(context, plaintext, promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .all, handshakeDone, !failed, let session {
            // A close_notify, best effort: the server logs an unexpected EOF without it.
            ERR_clear_error()
            SSL_shutdown(session)
            flushCiphertext(context, promise: nil)
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }

    // MARK: OpenSSL

    private func handshake(_ context: ChannelHandlerContext) {
        guard !handshakeDone, !failed, let session else { return }
        ERR_clear_error()
        let result = SSL_connect(session)
        flushCiphertext(context, promise: nil)
        context.flush()
        if result == 1 {
            handshakeDone = true
            context.fireUserInboundEventTriggered(TLSHandshakeCompleted())
            let writes = waitingWrites
            waitingWrites = []
            for (plaintext, promise) in writes { encrypt(context, plaintext, promise: promise) }
            if !writes.isEmpty { context.flush() }
            return
        }
        let error = SSL_get_error(session, result)
        if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { return }
        fail(context, handshakeFailure(session))
    }

    private func readPlaintext(_ context: ChannelHandlerContext) {
        guard let session, let incoming else { return }
        while !failed {
            // Sized by what is waiting (ciphertext is never shorter than its plaintext), so a
            // small message costs a small buffer and nothing is allocated when nothing waits.
            let waiting = max(Int(SSL_pending(session)), Int(BIO_ctrl_pending(incoming)))
            guard waiting > 0 else {
                flushCiphertext(context, promise: nil)
                return
            }
            let capacity = min(waiting, Self.readChunk)
            var buffer = context.channel.allocator.buffer(capacity: capacity)
            var count = 0
            ERR_clear_error()
            let result = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { bytes in
                let status = SSL_read_ex(session, bytes.baseAddress, bytes.count, &count)
                return status == 1 ? count : 0
            }
            if result > 0 {
                context.fireChannelRead(wrapInboundOut(buffer))
                continue
            }
            let error = SSL_get_error(session, 0)
            flushCiphertext(context, promise: nil)
            switch error {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return
            case SSL_ERROR_ZERO_RETURN:
                context.close(promise: nil)
                return
            default:
                fail(context, "TLS failed reading from the server (\(openSSLErrorText()))")
                return
            }
        }
    }

    private func encrypt(_ context: ChannelHandlerContext, _ plaintext: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard !failed, let session else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        var remaining = plaintext
        while remaining.readableBytes > 0 {
            var written = 0
            ERR_clear_error()
            let status = remaining.withUnsafeReadableBytes { SSL_write_ex(session, $0.baseAddress, $0.count, &written) }
            guard status == 1 else {
                promise?.fail(UpstreamTLSError(description: "TLS failed writing to the server (\(openSSLErrorText()))"))
                fail(context, "TLS failed writing to the server")
                return
            }
            remaining.moveReaderIndex(forwardBy: written)
        }
        flushCiphertext(context, promise: promise)
    }

    /// Hands what OpenSSL wrote to the outgoing BIO to the channel (not flushed).
    private func flushCiphertext(_ context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard let outgoing else {
            promise?.succeed()
            return
        }
        var pending: UnsafeMutablePointer<CChar>?
        // BIO_get_mem_data is a macro over BIO_ctrl.
        let count = BIO_ctrl(outgoing, BIO_CTRL_INFO, 0, &pending)
        guard count > 0, let pending else {
            promise?.succeed()
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: count)
        buffer.writeBytes(UnsafeRawBufferPointer(start: pending, count: count))
        // BIO_reset on a writable memory BIO discards what was taken.
        BIO_ctrl(outgoing, BIO_CTRL_RESET, 0, nil)
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    private func fail(_ context: ChannelHandlerContext, _ reason: String) {
        guard !failed else { return }
        failed = true
        let error = UpstreamTLSError(description: reason)
        failWaitingWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failWaitingWrites(_ error: any Error) {
        let writes = waitingWrites
        waitingWrites = []
        for (_, promise) in writes { promise?.fail(error) }
    }

    /// Explains a failed handshake: the certificate check first, then what OpenSSL saw.
    private func handshakeFailure(_ session: OpaquePointer) -> String {
        let verify = SSL_get_verify_result(session)
        if verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH {
            return "the server certificate does not name '\(serverName)' (\(String(cString: X509_verify_cert_error_string(verify))))"
        }
        if verify != X509_V_OK {
            return "the server certificate is not trusted (\(String(cString: X509_verify_cert_error_string(verify)))); set ca_file to the CA bundle that signed it"
        }
        return "the TLS handshake failed (\(openSSLErrorText()))"
    }

    private static func isIPAddress(_ name: String) -> Bool {
        HostAddress.ipVersion(name) != nil
    }
}

/// OpenSSL's queued errors as text (the most recent last), then cleared.
func openSSLErrorText() -> String {
    var messages: [String] = []
    while case let code = ERR_get_error(), code != 0 {
        var text = [UInt8](repeating: 0, count: 256)
        text.withUnsafeMutableBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { ERR_error_string_n(code, $0.baseAddress, $0.count) }
        }
        messages.append(String(decoding: text.prefix { $0 != 0 }, as: UTF8.self))
    }
    return messages.isEmpty ? "no detail" : messages.joined(separator: "; ")
}
