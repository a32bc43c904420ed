import NIOCore
import Testing
@testable import CredentialAgent

@Suite struct DenialLogLimiterTests {
    /// A uid refused thousands of times a second gets one line per second, which says how many
    /// refusals were not logged since the previous one; another uid has its own allowance.
    @Test func oneLinePerUIDPerSecondWithCounts() {
        var limiter = DenialLogLimiter()
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        do {
            let got = limiter.record(uid: 65534, at: start)
            #expect(got == 0)
        }
        for step in 1...2999 {
            do {
                let got = limiter.record(uid: 65534, at: start + .microseconds(Int64(step) * 300))
                #expect(got == nil)
            }
        }
        do {
            let got = limiter.record(uid: 1000, at: start + .milliseconds(500))
            #expect(got == 0)
        }
        do {
            let got = limiter.record(uid: nil, at: start + .milliseconds(500))
            #expect(got == 0)
        }
        do {
            let got = limiter.record(uid: 65534, at: start + .milliseconds(999))
            #expect(got == nil)
        }
        do {
            let got = limiter.record(uid: 65534, at: start + .seconds(1))
            #expect(got == 3000)
        }
        do {
            let got = limiter.record(uid: 65534, at: start + .seconds(3))
            #expect(got == 0)
        }
    }

    @Test func forgetsOldUIDsBeyondItsCapacity() {
        var limiter = DenialLogLimiter(interval: .seconds(1), capacity: 4)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        for uid in UInt32(0)..<4 {
            let got = limiter.record(uid: uid, at: start)
            #expect(got == 0)
        }
        do {
            let got = limiter.record(uid: 10, at: start + .seconds(2))
            #expect(got == 0)
        }
        #expect(limiter.trackedUIDs == 1)
    }
}
