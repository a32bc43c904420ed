import NIOConcurrencyHelpers

/// Lets one waiting task be woken early: ``wait(for:)`` returns when ``fire()`` is called, when
/// the duration has passed, or when the task is cancelled. A fire with nobody waiting is kept
/// for the next wait.
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var continuation: CheckedContinuation<Void, Never>?
    }
    private let state = NIOLockedValueBox(State())

    func fire() {
        let continuation: CheckedContinuation<Void, Never>? = state.withLockedValue { state in
            guard let continuation = state.continuation else {
                state.pending = true
                return nil
            }
            state.continuation = nil
            return continuation
        }
        continuation?.resume()
    }

    func wait(for duration: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: duration) }
            group.addTask { await self.waitForFire() }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForFire() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = state.withLockedValue { state in
                    if state.pending || Task.isCancelled {
                        state.pending = false
                        return true
                    }
                    state.continuation = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let continuation: CheckedContinuation<Void, Never>? = state.withLockedValue { state in
                defer { state.continuation = nil }
                return state.continuation
            }
            continuation?.resume()
        }
    }
}
