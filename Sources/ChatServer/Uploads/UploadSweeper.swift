import Foundation
import Logging
import ServiceLifecycle

/// Deletes unfinished uploads past their `Upload-Expires`, bytes and state, every `interval`.
/// Runs as a service of the application, so it stops with it.
struct UploadSweeper: Service {
    let uploads: any UploadRepository
    let files: UploadFiles
    /// Also finishes uploads that completed but were not processed (a restart in between).
    let completion: UploadCompletion?
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await completion?.processPending()
                _ = try? await sweep()
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// One pass; returns how many uploads it removed.
    @discardableResult
    func sweep(now: Date = Date()) async throws -> Int {
        let expired = try await uploads.expired(at: now)
        for id in expired {
            try await uploads.delete(id: id)
            try await files.remove(id)
        }
        if !expired.isEmpty { logger.info("expired uploads removed", metadata: ["count": "\(expired.count)"]) }
        return expired.count
    }
}
