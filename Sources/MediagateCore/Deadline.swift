import Synchronization

/// `operation`'s result, or nil when `timeout` passes first; the operation is then left to
/// finish on its own.
///
/// For calls that may never return, in services that must stop when asked: a query that
/// postgres-nio 1.33 queued for a connection while the database refused them never completed,
/// even when cancelled, and a service awaiting it held the whole server's shutdown (seen in
/// the readiness test: the processing runner's poll and the metrics sampler query every few
/// seconds, so one always lands in the window).
package func answer<T: Sendable>(within timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T? {
    let waiting = Mutex<CheckedContinuation<T?, any Error>?>(nil)
    let timer = Mutex<Task<Void, Never>?>(nil)
    let settle: @Sendable (Result<T?, any Error>) -> Void = { result in
        guard let continuation = waiting.withLock({ $0.take() }) else { return }
        timer.withLock { $0?.cancel() }
        continuation.resume(with: result)
    }
    return try await withCheckedThrowingContinuation { continuation in
        waiting.withLock { $0 = continuation }
        timer.withLock { task in
            task = Task {
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled { settle(.success(nil)) }
            }
        }
        // Unstructured on purpose: the answer must not wait for an operation that will not end.
        Task {
            do { settle(.success(try await operation())) } catch { settle(.failure(error)) }
        }
    }
}
