import Foundation
import Synchronization

/// Requests waiting for completed uploads to be processed (`GET /api/uploads/{id}?wait=N`).
///
/// A client that posts what it uploaded must learn what the upload became; polling asked the
/// server once every few milliseconds per file, and each poll verified a token and read SQLite
/// twice (measured: ~9 polls per photo, most of the requests of a batch upload). A waiting
/// request is woken when processing of its upload ends, however it ended, and reads the
/// state again.
package final class UploadWaiters: Sendable {
    private struct State {
        package var waiting: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
        /// Uploads settled lately, so that a request that read "processing" just before the
        /// settlement does not sleep through it. Oldest first; bounded.
        package var settled: Set<String> = []
        package var settledOrder: [String] = []
    }

    private let state = Mutex(State())
    private let remembered: Int

    package init(remembered: Int = 4096) {
        self.remembered = remembered
    }

    /// Returns when `uploadId` is settled (at once if it was lately), or when the task is
    /// cancelled. Callers re-read the upload after it returns: waking is only a hint.
    package func next(_ uploadId: String) async {
        let ticket = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.settled.contains(uploadId) || Task.isCancelled { return true }
                    state.waiting[uploadId, default: [:]][ticket] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiting[uploadId]?.removeValue(forKey: ticket) }?.resume()
        }
    }

    /// Waits for `uploadId` to be settled, for at most `timeout`.
    package func next(_ uploadId: String, timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.next(uploadId) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Processing of `uploadId` ended (a file, a refusal or an error): wakes its waiters.
    package func settle(_ uploadId: String) {
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if state.settled.insert(uploadId).inserted {
                state.settledOrder.append(uploadId)
                if state.settledOrder.count > remembered {
                    state.settled.remove(state.settledOrder.removeFirst())
                }
            }
            return state.waiting.removeValue(forKey: uploadId).map { Array($0.values) } ?? []
        }
        woken.forEach { $0.resume() }
    }
}
