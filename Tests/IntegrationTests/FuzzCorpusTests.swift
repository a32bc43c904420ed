import Foundation
import Testing
import TestSupport

/// The fuzzing harnesses' committed inputs (seeds, and every crash the fuzzer found once) replayed
/// through the plainly built harnesses: none may crash again.
@Suite struct FuzzCorpusTests {
    @Test func everyCommittedFuzzInputIsHandledWithoutACrash() async throws {
        let replay = URL(fileURLWithPath: Peers.credagentBinary).deletingLastPathComponent().path + "/credagent-fuzz"
        let corpus = ChildProcess.packageRoot + "/Fuzz/corpus"
        let harnesses = try FileManager.default.contentsOfDirectory(atPath: corpus).sorted()
        #expect(harnesses.count >= 9, "a corpus directory per harness")
        let result = try await ChildProcess.run(replay, harnesses.map { corpus + "/" + $0 })
        #expect(result.status == 0, "credagent-fuzz exited \(result.status): \(result.stdout.suffix(500)) \(result.stderr.suffix(3000))")
        #expect(result.stdout.contains("none crashed"))
    }
}
