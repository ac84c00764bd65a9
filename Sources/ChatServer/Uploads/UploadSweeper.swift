import Foundation
import Logging
import ServiceLifecycle

/// Deletes unfinished uploads past their `Upload-Expires`, bytes and state, every `interval`,
/// and now and then blobs no stored file names. Runs as a service of the application, so it
/// stops with it.
struct UploadSweeper: Service {
    let uploads: any UploadRepository
    let files: UploadFiles
    /// Also finishes uploads that completed but were not processed (a restart in between).
    let completion: UploadCompletion?
    let interval: Duration
    let logger: Logger
    /// Orphaned blobs and decoded pictures older than this are deleted, once every
    /// `orphanPassEvery` passes (listing the blob store is not free).
    var orphanGrace: TimeInterval = 3600
    var orphanPassEvery = 12

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var pass = 0
            while !Task.isCancelled {
                await completion?.processPending()
                _ = try? await sweep()
                if pass % orphanPassEvery == 0, let completion {
                    let removed = (try? await completion.store.collectOrphans(decodedDirectory: completion.thumbnails.decodedDirectory,
                                                                              writtenBefore: Date().addingTimeInterval(-orphanGrace))) ?? 0
                    if removed > 0 { logger.info("orphaned blobs removed", metadata: ["count": "\(removed)"]) }
                }
                pass += 1
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
