import NIOCore
import NIOHTTP1
import Testing
@testable import CredentialAgent

private let limits = ConnectionStateMachine.Limits(maxBodyBytes: 16, maxQueuedBytes: 200, requestTimeout: .seconds(10))
private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

private func head(_ uri: String = "/v1/health", keepAlive: Bool = true) -> HTTPRequestHead {
    var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: uri)
    if !keepAlive { head.headers.add(name: "connection", value: "close") }
    return head
}

/// Feeds a whole request (head and end) and returns the action of its end.
private func request(_ machine: inout ConnectionStateMachine, _ head: HTTPRequestHead, at now: NIODeadline = start)
    -> ConnectionStateMachine.Action {
    do {
        let got = machine.partReceived(.head(head), bytes: 40, at: now)
        #expect(got == .none)
    }
    return machine.partReceived(.end(nil), bytes: 0, at: now)
}

@Suite struct ConnectionStateMachineTests {
    @Test func aKeepAliveRequestIsAnsweredAndTheConnectionWaitsForTheNext() {
        var machine = ConnectionStateMachine(limits: limits)
        machine.bytesArrived(at: start)
        do {
            let got = request(&machine, head())
            #expect(got == .answer(head()))
        }
        do {
            let got = machine.readComplete()
            #expect(got == .none, "a request complete within one read needs no deadline")
        }
        do {
            let got = machine.startResponse()
            #expect(got == .init(version: .http1_1, keepAlive: true))
        }
        do {
            let got = machine.responseWritten(at: start)
            #expect(got == .none)
        }
        do {
            let got = machine.readRequested()
            #expect(got == .read)
        }
        do {
            let got = machine.startResponse()
            #expect(got == nil, "nothing left to answer")
        }
    }

    @Test func connectionCloseIsHonoured() {
        var machine = ConnectionStateMachine(limits: limits)
        do {
            let got = request(&machine, head(keepAlive: false))
            #expect(got == .answer(head(keepAlive: false)))
        }
        do {
            let got = machine.startResponse()
            #expect(got == .init(version: .http1_1, keepAlive: false))
        }
        do {
            let got = machine.partReceived(.head(head()), bytes: 40, at: start)
            #expect(got == .none, "nothing is taken after close")
        }
    }

    @Test func pipelinedRequestsWaitBehindAnAnswerAndHoldReads() {
        var machine = ConnectionStateMachine(limits: limits)
        do {
            let got = request(&machine, head("/v1/credentials/a?wait=1&version=1"))
            #expect(got == .answer(head("/v1/credentials/a?wait=1&version=1")))
        }
        do {
            let got = machine.readRequested()
            #expect(got == .read, "reading goes on while nothing waits")
        }
        do {
            let got = request(&machine, head("/one"))
            #expect(got == .none)
        }
        do {
            let got = machine.partReceived(.head(head("/two")), bytes: 40, at: start)
            #expect(got == .none)
        }
        do {
            let got = machine.readRequested()
            #expect(got == .none, "held while requests wait")
        }
        do {
            let framing = machine.startResponse()
            #expect(framing != nil)
        }
        do {
            let got = machine.responseWritten(at: start)
            #expect(got == .answer(head("/one")))
        }
        do {
            let framing = machine.startResponse()
            #expect(framing != nil)
        }
        // "/two" is not complete yet: reading resumes and its deadline runs from when it was taken.
        do {
            let got = machine.responseWritten(at: start + .seconds(1))
            #expect(got == .resume(read: true, requestDeadline: start + .seconds(11)))
        }
        do {
            let got = machine.partReceived(.end(nil), bytes: 0, at: start)
            #expect(got == .answer(head("/two")))
        }
    }

    @Test func tooManyWaitingBytesCloseTheConnection() {
        var machine = ConnectionStateMachine(limits: limits)
        do {
            let got = request(&machine, head())
            #expect(got == .answer(head()))
        }
        for _ in 0..<5 {
            let got = machine.partReceived(.head(head()), bytes: 40, at: start)
            #expect(got == .none)
        }
        do {
            let got = machine.partReceived(.head(head()), bytes: 40, at: start)
            #expect(got == .close)
        }
        do {
            let got = machine.startResponse()
            #expect(got == nil)
        }
    }

    /// The peer does not read what it is sent: requests are no longer taken nor read, and if it
    /// stays so for the idle timeout the connection is closed.
    @Test func aPeerThatDoesNotReadIsNoLongerReadFromAndThenClosed() {
        var machine = ConnectionStateMachine(limits: limits)
        do {
            let got = request(&machine, head("/metrics"))
            #expect(got == .answer(head("/metrics")))
        }
        _ = machine.startResponse()
        do {
            let got = machine.writabilityChanged(false, at: start)
            #expect(got == .none)
        }
        do {
            let got = machine.responseWritten(at: start)
            #expect(got == .none)
        }
        do {
            let got = request(&machine, head("/metrics"))
            #expect(got == .none, "waits instead of being answered")
        }
        do {
            let got = machine.readRequested()
            #expect(got == .none)
        }
        do {
            let got = machine.readIdle()
            #expect(got == .close)
        }
    }

    @Test func catchingUpAnswersWhatWaitedAndResumesReading() {
        var machine = ConnectionStateMachine(limits: limits)
        do {
            let got = machine.writabilityChanged(false, at: start)
            #expect(got == .none)
        }
        do {
            let got = request(&machine, head("/metrics"))
            #expect(got == .none)
        }
        do {
            let got = machine.readRequested()
            #expect(got == .none)
        }
        do {
            let got = machine.writabilityChanged(true, at: start)
            #expect(got == .answer(head("/metrics")))
        }
        _ = machine.startResponse()
        do {
            let got = machine.responseWritten(at: start)
            #expect(got == .resume(read: true, requestDeadline: nil))
        }
    }

    @Test func anIdleConnectionIsClosedButNotOneThatIsAnswered() {
        var idle = ConnectionStateMachine(limits: limits)
        do {
            let got = idle.readIdle()
            #expect(got == .close)
        }
        var waiting = ConnectionStateMachine(limits: limits)
        _ = request(&waiting, head())
        do {
            let got = waiting.readIdle()
            #expect(got == .none)
        }
        var receiving = ConnectionStateMachine(limits: limits)
        receiving.bytesArrived(at: start)
        do {
            let got = receiving.readIdle()
            #expect(got == .none, "a partial request is left to its deadline")
        }
    }

    @Test func aPartialRequestIsTimedFromItsFirstByte() {
        var machine = ConnectionStateMachine(limits: limits)
        machine.bytesArrived(at: start)
        machine.bytesArrived(at: start + .seconds(5))
        do {
            let got = machine.readComplete()
            #expect(got == .armRequestDeadline(start + .seconds(10)))
        }
        do {
            let got = machine.readComplete()
            #expect(got == .none, "armed once")
        }
        do {
            let got = machine.requestDeadlinePassed()
            #expect(got == .refuse(.timedOut))
        }
        do {
            let got = machine.startResponse()
            #expect(got == .init(version: .http1_1, keepAlive: false))
        }
    }

    @Test func aDeadlineThatFiresBetweenRequestsDoesNothing() {
        var machine = ConnectionStateMachine(limits: limits)
        machine.bytesArrived(at: start)
        _ = machine.partReceived(.head(head()), bytes: 40, at: start)
        do {
            let got = machine.readComplete()
            #expect(got == .armRequestDeadline(start + .seconds(10)))
        }
        do {
            let got = machine.partReceived(.end(nil), bytes: 0, at: start)
            #expect(got == .answer(head()))
        }
        do {
            let got = machine.requestDeadlinePassed()
            #expect(got == .none)
        }
    }

    @Test func oversizedBodiesAndMalformedStreamsAreRefusedAndClose() {
        var machine = ConnectionStateMachine(limits: limits)
        _ = machine.partReceived(.head(head()), bytes: 40, at: start)
        do {
            let got = machine.partReceived(.body(ByteBuffer(string: "0123456789")), bytes: 10, at: start)
            #expect(got == .none)
        }
        do {
            let got = machine.partReceived(.body(ByteBuffer(string: "0123456789")), bytes: 10, at: start)
            #expect(got == .refuse(.bodyTooLarge))
        }
        let framing = machine.startResponse()
        #expect(framing?.keepAlive == false)

        var malformed = ConnectionStateMachine(limits: limits)
        do {
            let got = malformed.parserFailed(headerTooLarge: true)
            #expect(got == .refuse(.headerTooLarge))
        }
        var answering = ConnectionStateMachine(limits: limits)
        _ = request(&answering, head())
        do {
            let got = answering.parserFailed(headerTooLarge: false)
            #expect(got == .close, "an answer is pending: no second one")
        }
    }

    @Test func quiescingClosesIdleConnectionsAndEndsWaits() {
        var idle = ConnectionStateMachine(limits: limits)
        do {
            let got = idle.quiesce()
            #expect(got == .close)
        }
        var waiting = ConnectionStateMachine(limits: limits)
        _ = request(&waiting, head())
        do {
            let got = waiting.quiesce()
            #expect(got == .interruptWait)
        }
        do {
            let got = waiting.startResponse()
            #expect(got == .init(version: .http1_1, keepAlive: false), "closes after the answer")
        }
    }
}
