import CredentialModel
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// What readers of one credential see: its config, its refresh bookkeeping and, for the current
/// version, the encoded JSON answer. Immutable; a refresh publishes a new one.
public final class CredentialSnapshot: Sendable {
    public let config: CredentialConfig
    public let machine: RefreshStateMachine
    /// The JSON answer for the held secret (nil while none has been obtained). Encoded once per
    /// version so that serving it costs no encoding.
    public let body: ByteBuffer?
    /// The whole HTTP/1.1 200 response (status line, headers and ``body``) for keep-alive
    /// clients, so that the hot path writes one shared buffer and encodes nothing.
    public let keepAliveResponse: ByteBuffer?

    public var name: String { config.name.rawValue }
    /// Increases by one with every new secret; 0 before the first.
    public var version: Int { machine.generation }

    public func state(at now: Date) -> CredentialState { machine.state(at: now) }

    /// The encoded credential if it may be handed out at `now`.
    public func servableBody(at now: Date) -> ByteBuffer? {
        machine.servable(at: now) != nil ? body : nil
    }

    /// The keep-alive response if the credential may be handed out at `now`.
    public func servableKeepAliveResponse(at now: Date) -> ByteBuffer? {
        machine.servable(at: now) != nil ? keepAliveResponse : nil
    }

    fileprivate init(config: CredentialConfig, machine: RefreshStateMachine, body: ByteBuffer?,
                     keepAliveResponse: ByteBuffer?) {
        self.config = config
        self.machine = machine
        self.body = body
        self.keepAliveResponse = keepAliveResponse
    }

    /// `body` is copied once behind the response head; ``body`` is then a view into that buffer.
    init(config: CredentialConfig, machine: RefreshStateMachine, body: ByteBuffer?) {
        self.config = config
        self.machine = machine
        guard let body else {
            self.body = nil
            self.keepAliveResponse = nil
            return
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + "content-length: \(body.readableBytes)\r\ncache-control: no-store\r\n\r\n"
        var response = ByteBufferAllocator().buffer(capacity: head.utf8.count + body.readableBytes)
        let headLength = response.writeString(head)
        response.writeImmutableBuffer(body)
        self.keepAliveResponse = response
        self.body = response.getSlice(at: response.readerIndex + headLength, length: body.readableBytes)
    }
}

/// The current snapshot of every credential by name, with waiters for rotations.
///
/// Reads take a short lock and copy a reference; they never wait for a refresh. Waiters are
/// callbacks (the server hops back to its event loop), called once with a ``WaitOutcome``.
public final class CredentialStore: Sendable {
    /// Why a waiter is called; it is called once and then forgotten.
    public enum WaitOutcome: Sendable {
        /// The credential rotated: its new snapshot.
        case rotated(CredentialSnapshot)
        /// The credential was removed.
        case removed
        /// Who may read secrets changed (``recheckWaiters()``): the waiter checks that its peer
        /// still may, and waits again if so.
        case recheck
    }

    /// Called once with why the wait ended.
    public typealias Waiter = @Sendable (WaitOutcome) -> Void

    private struct Slot {
        var snapshot: CredentialSnapshot
        /// The refresher that may publish this name; a replaced one is ignored.
        var owner: ObjectIdentifier
        var waiters: [Int: Waiter] = [:]
    }

    private struct Contents {
        var slots: [String: Slot] = [:]
        var order: [String] = []
        var nextWaiterID = 0
    }

    private let contents = NIOLockedValueBox(Contents())

    public init() {}

    /// The current snapshot of `name`, or nil for an unknown name.
    public func snapshot(_ name: String) -> CredentialSnapshot? {
        contents.withLockedValue { $0.slots[name]?.snapshot }
    }

    /// Every snapshot, in configuration order.
    public func snapshots() -> [CredentialSnapshot] {
        contents.withLockedValue { contents in contents.order.compactMap { contents.slots[$0]?.snapshot } }
    }

    /// Adds the credential `config` describes, or replaces the one of the same name (a
    /// reload changed it); from now on only `owner` may publish it. Long polls keep waiting.
    public func register(_ config: CredentialConfig, _ machine: RefreshStateMachine, owner: ObjectIdentifier) {
        let snapshot = makeSnapshot(config, machine, previous: nil)
        contents.withLockedValue { contents in
            if var slot = contents.slots[config.name.rawValue] {
                slot.snapshot = snapshot
                slot.owner = owner
                contents.slots[config.name.rawValue] = slot
            } else {
                contents.slots[config.name.rawValue] = Slot(snapshot: snapshot, owner: owner)
                contents.order.append(config.name.rawValue)
            }
        }
    }

    /// Publishes `machine` as the new state of a registered credential; waiters are woken when
    /// the version changes. Ignored unless `owner` is the credential's current refresher.
    public func publish(_ config: CredentialConfig, _ machine: RefreshStateMachine, owner: ObjectIdentifier) {
        let previous = contents.withLockedValue { $0.slots[config.name.rawValue] }
        guard let previous, previous.owner == owner else { return }
        // Encode outside the lock; only the owning refresher publishes a given name.
        let snapshot = makeSnapshot(config, machine, previous: previous.snapshot)
        let woken: [Waiter] = contents.withLockedValue { contents in
            guard var slot = contents.slots[config.name.rawValue], slot.owner == owner else { return [] }
            let rotated = slot.snapshot.version != snapshot.version
            slot.snapshot = snapshot
            let woken = rotated ? Array(slot.waiters.values) : []
            if rotated { slot.waiters.removeAll() }
            contents.slots[config.name.rawValue] = slot
            return woken
        }
        for waiter in woken { waiter(.rotated(snapshot)) }
    }

    /// Encodes the answer only when the version or the config changed: once per secret.
    private func makeSnapshot(_ config: CredentialConfig, _ machine: RefreshStateMachine,
                              previous: CredentialSnapshot?) -> CredentialSnapshot {
        guard let previous, previous.version == machine.generation, previous.config == config else {
            let body = machine.held.map { held in
                ByteBuffer(bytes: ServedCredential(config, version: machine.generation, held: held).json.bytes)
            }
            return CredentialSnapshot(config: config, machine: machine, body: body)
        }
        return CredentialSnapshot(config: config, machine: machine, body: previous.body,
                                  keepAliveResponse: previous.keepAliveResponse)
    }

    /// Removes `name`; its waiters are called with ``WaitOutcome/removed``.
    public func remove(_ name: String) {
        let woken: [Waiter] = contents.withLockedValue { contents in
            guard let slot = contents.slots.removeValue(forKey: name) else { return [] }
            contents.order.removeAll { $0 == name }
            return Array(slot.waiters.values)
        }
        for waiter in woken { waiter(.removed) }
    }

    /// What ``waitForVersion(_:otherThan:_:)`` did.
    public enum WaitRegistration: Sendable {
        /// No such credential.
        case unknown
        /// The version already differs: here is the snapshot, the waiter was not kept.
        case changed(CredentialSnapshot)
        /// The waiter is kept until the version changes; cancel it with this id.
        case waiting(id: Int)
    }

    /// Calls `waiter` once when the version of `name` becomes different from `version`, unless
    /// it already is (then nothing is registered and the snapshot is returned).
    public func waitForVersion(_ name: String, otherThan version: Int, _ waiter: @escaping Waiter) -> WaitRegistration {
        contents.withLockedValue { contents in
            guard var slot = contents.slots[name] else { return .unknown }
            if slot.snapshot.version != version { return .changed(slot.snapshot) }
            let id = contents.nextWaiterID
            contents.nextWaiterID += 1
            slot.waiters[id] = waiter
            contents.slots[name] = slot
            return .waiting(id: id)
        }
    }

    /// Ends every wait with ``WaitOutcome/recheck``: the agent calls it after changing who may read
    /// secrets, so that no long poll begun under the old rules receives the next secret.
    public func recheckWaiters() {
        let woken: [Waiter] = contents.withLockedValue { contents in
            var woken: [Waiter] = []
            for name in contents.order where contents.slots[name]?.waiters.isEmpty == false {
                woken.append(contentsOf: contents.slots[name]!.waiters.values)
                contents.slots[name]!.waiters.removeAll()
            }
            return woken
        }
        for waiter in woken { waiter(.recheck) }
    }

    /// Forgets a waiter (its long poll timed out or its client left). True if it was still kept.
    @discardableResult
    public func cancelWait(_ name: String, id: Int) -> Bool {
        contents.withLockedValue { contents in
            contents.slots[name]?.waiters.removeValue(forKey: id) != nil
        }
    }
}

extension ServedCredential {
    /// The answer for `config` holding `held` as version `version`.
    init(_ config: CredentialConfig, version: Int, held: RefreshStateMachine.Held) {
        let issued = held.credential
        self.init(name: config.name, provider: config.provider, version: version, username: issued.username,
                  secret: issued.secret, attributes: issued.attributes, issuedAt: issued.issuedAt,
                  expiresAt: issued.expiresAt, refreshAt: held.refreshAt, connection: config.connection,
                  proxy: config.proxy?.listen)
    }
}
