import Foundation
import Logging
import ServiceLifecycle

/// Deletes unfinished uploads past their `Upload-Expires`, bytes and state, every `interval`,
/// and now and then blobs no stored file names and decoded pictures likewise. Runs as a service
/// of the application, so it stops with it.
package struct UploadSweeper: Service {
    package let uploads: any UploadRepository
    package let uploadStore: any UploadStore
    /// Where orphaned blobs are collected from; nil: not collected.
    package let files: FileStore?
    package let thumbnails: Thumbnails?
    package let interval: Duration
    package let logger: Logger
    /// Orphaned blobs and decoded pictures older than this are deleted, once every
    /// `orphanPassEvery` passes (listing the blob store is not free).
    package var orphanGrace: TimeInterval = 3600
    package var orphanPassEvery = 12

    package init(uploads: any UploadRepository, uploadStore: any UploadStore, files: FileStore?, thumbnails: Thumbnails?,
                 interval: Duration, logger: Logger) {
        self.uploads = uploads
        self.uploadStore = uploadStore
        self.files = files
        self.thumbnails = thumbnails
        self.interval = interval
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            var pass = 0
            while !Task.isCancelled {
                // Bounded (``answer(within:_:)``): the sweeper stops when asked even if the
                // database never answers; an abandoned pass finishes or fails on its own.
                let sweeper = self
                _ = try? await answer(within: .seconds(120)) { try await sweeper.sweep() }
                if pass % orphanPassEvery == 0 {
                    let cutoff = Date().addingTimeInterval(-orphanGrace)
                    let removed = ((try? await answer(within: .seconds(600)) { try await sweeper.collectOrphans(writtenBefore: cutoff) }) ?? nil) ?? 0
                    if removed > 0 { logger.info("orphaned blobs removed", metadata: ["count": "\(removed)"]) }
                }
                pass += 1
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// Deletes blobs no file names, and decoded pictures likewise, last written before
    /// `cutoff`; returns how many went.
    package func collectOrphans(writtenBefore cutoff: Date) async throws -> Int {
        guard let files else { return 0 }
        var removed = try await files.collectOrphans(writtenBefore: cutoff)
        if let thumbnails {
            removed += try await OrphanFiles.remove(in: thumbnails.decodedDirectory, suffix: ".jpg", keeping: try await files.files.allSHA256(),
                                                    writtenBefore: cutoff, threadPool: thumbnails.threadPool)
        }
        return removed
    }

    /// One pass; returns how many uploads it removed.
    @discardableResult
    package func sweep(now: Date = Date()) async throws -> Int {
        let expired = try await uploads.expired(at: now)
        for id in expired {
            try await uploads.delete(id: id)
            try await uploadStore.remove(id)
        }
        if !expired.isEmpty { logger.info("expired uploads removed", metadata: ["count": "\(expired.count)"]) }
        return expired.count
    }
}
