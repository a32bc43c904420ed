@testable import AuthProxy
import NIOCore
import NIOEmbedded
import Testing

/// The one-check deadline on a loop whose clock the test moves.
struct MovingDeadlineTests {
    private final class Passes {
        var count = 0
    }

    @Test func movedLaterItPassesOnceAtTheLastDeadlineWithOneCheckAtATime() {
        let loop = EmbeddedEventLoop()
        let passes = Passes()
        let deadline = MovingDeadline(on: loop) { passes.count += 1 }
        deadline.move(after: .seconds(3))
        for _ in 0..<5 {
            loop.advanceTime(by: .seconds(1))
            deadline.move(after: .seconds(3))
        }
        // One check, rescheduled when it ran early, not one timer per move.
        #expect(passes.count == 0)
        loop.advanceTime(by: .milliseconds(2999))
        #expect(passes.count == 0)
        loop.advanceTime(by: .milliseconds(1))
        #expect(passes.count == 1)
        #expect(deadline.deadline == nil)
        loop.advanceTime(by: .seconds(10))
        #expect(passes.count == 1, "a passed deadline is gone until moved again")
    }

    @Test func movedEarlierItPassesAtTheEarlierOne() {
        let loop = EmbeddedEventLoop()
        let passes = Passes()
        let deadline = MovingDeadline(on: loop) { passes.count += 1 }
        deadline.move(after: .seconds(300))
        deadline.move(after: .seconds(1))
        loop.advanceTime(by: .seconds(1))
        #expect(passes.count == 1)
    }

    @Test func noneOrStoppedItNeverPassesAndLetsGoOfItsAction() {
        let loop = EmbeddedEventLoop()
        let passes = Passes()
        let cleared = MovingDeadline(on: loop) { passes.count += 1 }
        cleared.move(after: .seconds(1))
        cleared.clear()
        loop.advanceTime(by: .seconds(5))
        #expect(passes.count == 0)

        weak var heldByAction: Passes?
        let stopped: MovingDeadline
        do {
            let captured = Passes()
            heldByAction = captured
            stopped = MovingDeadline(on: loop) { captured.count += 1 }
        }
        stopped.move(after: .seconds(1))
        stopped.stop()
        #expect(heldByAction == nil, "the action, and what it holds, is released at stop")
        stopped.move(after: .seconds(1))
        loop.advanceTime(by: .seconds(5))
        #expect(stopped.deadline == nil)
    }
}
