/// Runs `body`, then `cleanup`, whether `body` returned or threw: the asynchronous `defer` a test
/// needs to stop what it started (an emulator, an agent, a proxy) before it ends, so nothing it
/// started outlives it.
public func withCleanup<Result>(_ body: () async throws -> Result, cleanup: () async -> Void) async rethrows -> Result {
    let result: Result
    do {
        result = try await body()
    } catch {
        await cleanup()
        throw error
    }
    await cleanup()
    return result
}
