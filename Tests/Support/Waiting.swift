import Foundation

extension Process {
    /// Waits for the process to end without holding a thread.
    ///
    /// `waitUntilExit()` blocks its thread (and off the main thread on Linux spins a core until
    /// the exit); on Swift's cooperative pool that starves the tests running beside it.
    public func exited() async {
        while isRunning { try? await Task.sleep(for: .milliseconds(10)) }
    }
}

/// Runs blocking work (waiting for processes, reading pipes, the blocking client library) on a
/// thread of its own, so the tests running beside it keep Swift's few cooperative threads.
///
/// Expectations (`#expect`) inside `body` have no test to report to: return what to check.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
