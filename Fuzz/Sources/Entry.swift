import Foundation

// Built two ways (scripts/fuzz):
// - with `-sanitize=fuzzer,address -D FUZZING`: libFuzzer's driver calls `LLVMFuzzerTestOneInput`,
//   and `CREDAGENT_FUZZ_TARGET` names the harness;
// - plainly: `credagent-fuzz CORPUS_DIR...` replays every file of each `Fuzz/corpus/HARNESS`
//   directory through its harness, so committed inputs (crashes found included) are regression tests.

#if FUZZING
/// The harness this process fuzzes, chosen once from the environment.
private let selectedHarness: Harness = {
    let name = ProcessInfo.processInfo.environment["CREDAGENT_FUZZ_TARGET"] ?? ""
    guard let harness = Harnesses.named(name) else {
        let names = Harnesses.all.map(\.name).joined(separator: ", ")
        FileHandle.standardError.write(Data("credagent-fuzz: set CREDAGENT_FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(2)
    }
    return harness
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selectedHarness.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// The executable's entry point. SwiftPM links an executable target's `main` to the symbol
/// `<module>_main`; libFuzzer's driver, given the process arguments, runs from here.
@_cdecl("credagent_fuzz_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, fuzzOneInput)
}
#else
@main
enum CorpusReplay {
    static func main() {
        let directories = CommandLine.arguments.dropFirst()
        guard !directories.isEmpty else {
            print("usage: credagent-fuzz CORPUS_DIR...  (each directory is named after its harness: "
                  + Harnesses.all.map(\.name).joined(separator: ", ") + ")")
            exit(2)
        }
        var replayed = 0
        for directory in directories {
            let name = URL(fileURLWithPath: directory).lastPathComponent
            guard let harness = Harnesses.named(name) else {
                print("credagent-fuzz: \(directory) is not named after a harness")
                exit(2)
            }
            let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            for file in files.sorted() {
                guard let bytes = FileManager.default.contents(atPath: directory + "/" + file) else { continue }
                harness.run(Array(bytes))
                replayed += 1
            }
        }
        print("credagent-fuzz: replayed \(replayed) inputs, none crashed")
    }
}
#endif
