import NIOCore

/// A connection's deadline that moves with its traffic (an idle or a request timeout), kept by
/// one scheduled check instead of a timer cancelled and scheduled again at every read. Moving it
/// later is a store: the check, when it runs and finds the deadline moved, schedules itself for
/// the new one. Moving it earlier than the scheduled check reschedules the check.
///
/// Used on its event loop only. ``stop()`` ends it and lets go of the action, which usually holds
/// the connection's handler: call it when the connection closes.
public final class MovingDeadline {
    private let eventLoop: any EventLoop
    private var passed: (() -> Void)?
    /// When the deadline passes; nil while there is none.
    public private(set) var deadline: NIODeadline?
    private var check: (task: Scheduled<Void>, at: NIODeadline)?

    /// A deadline on `eventLoop`, none yet, that runs `passed` when it passes.
    public init(on eventLoop: any EventLoop, whenPassed passed: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.passed = passed
    }

    /// Sets the deadline `delay` from now on the event loop's clock; nothing after ``stop()``.
    public func move(after delay: TimeAmount) {
        move(to: eventLoop.now + delay)
    }

    /// Sets the deadline to `deadline`, on the event loop's clock (for a caller that has just
    /// read it); nothing after ``stop()``.
    public func move(to deadline: NIODeadline) {
        guard passed != nil else { return }
        self.deadline = deadline
        if let check, check.at <= deadline { return }
        check?.task.cancel()
        schedule(at: deadline)
    }

    /// Leaves no deadline until the next move (the scheduled check finds none and ends).
    public func clear() {
        deadline = nil
    }

    /// Ends the deadline for good.
    public func stop() {
        deadline = nil
        passed = nil
        check?.task.cancel()
        check = nil
    }

    private func schedule(at time: NIODeadline) {
        let task = eventLoop.assumeIsolated().scheduleTask(deadline: time) { [self] in
            check = nil
            guard let deadline else { return }
            if eventLoop.now < deadline { return schedule(at: deadline) }
            self.deadline = nil
            passed?()
        }
        check = (task, time)
    }
}
