import Dispatch
import NIOConcurrencyHelpers

/// Lets one waiting task be woken early: ``wait(for:)`` returns when ``fire()`` is called, when
/// the duration has passed, or when the task is cancelled. A fire with nobody waiting is kept
/// for the next wait.
///
/// A wait is one continuation and one Dispatch timer, no child tasks: an agent with 10,000
/// credentials has 10,000 of them waiting at any time.
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var continuation: CheckedContinuation<Void, Never>?
        /// Identifies the current wait, so that a late timer cannot end a later one.
        var waitID = 0
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

    /// Whether a task is in ``wait(for:)`` now.
    var isWaiting: Bool { state.withLockedValue { $0.continuation != nil } }

    func wait(for duration: Duration) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let waitID: Int? = state.withLockedValue { state in
                    if state.pending || Task.isCancelled {
                        state.pending = false
                        return nil
                    }
                    state.waitID += 1
                    state.continuation = continuation
                    return state.waitID
                }
                guard let waitID else { return continuation.resume() }
                // Capped at about 31 years, so that the conversion to Int cannot overflow.
                let nanoseconds = Int(max(0, min(duration / .nanoseconds(1), 1e18)))
                DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) {
                    self.timerExpired(waitID)
                }
            }
        } onCancel: {
            fire()
        }
    }

    private func timerExpired(_ waitID: Int) {
        let continuation: CheckedContinuation<Void, Never>? = state.withLockedValue { state in
            guard state.waitID == waitID, let continuation = state.continuation else { return nil }
            state.continuation = nil
            return continuation
        }
        continuation?.resume()
    }
}
