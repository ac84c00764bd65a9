import Foundation
import MediaPipeline
import MediagateWire
import Metrics
import NIOPosix

/// Turns uploaded bytes into stored files through the media pipeline: location metadata
/// stripped, the file probed, the policy asked about the sniffed type, the bytes moved into
/// the blob store and the eager thumbnail kept. Completed tus uploads come here through the
/// ``JobQueue`` (``ProcessingJobRunner``); the multipart endpoint calls ``storeFile`` directly.
package struct AttachmentIngest: Sendable {
    package let uploads: any UploadRepository
    package let uploadStore: any UploadStore
    package let store: FileStore
    package let processor: MediaProcessor
    package let thumbnails: Thumbnails
    package let policy: UploadPolicy
    /// Whether pictures lose their location metadata before they are stored (`stripLocation`).
    package var stripsLocation = true
    /// Requests waiting for an upload's processing to end.
    package let waiters = UploadWaiters()
    package var threadPool: NIOThreadPool = .singleton

    package init(uploads: any UploadRepository, uploadStore: any UploadStore, store: FileStore, processor: MediaProcessor,
                 thumbnails: Thumbnails, policy: UploadPolicy, stripsLocation: Bool = true) {
        self.uploads = uploads
        self.uploadStore = uploadStore
        self.store = store
        self.processor = processor
        self.thumbnails = thumbnails
        self.policy = policy
        self.stripsLocation = stripsLocation
    }

    /// The thumbnail made in the same decode pass as the probe, so chat can show it at once.
    package static let eagerThumbnail = Thumbnails.request(width: 320, height: 320, fit: .contain, format: .jpeg)

    /// Processes one completed upload; safe to call again for the same one (a job retried after
    /// its worker died). Wakes the requests waiting for it however it ends.
    package func process(_ job: ProcessingJob) async throws {
        defer { waiters.settle(job.uploadId) }
        guard let record = try await uploads.upload(id: job.uploadId), record.completedAt != nil, record.fileId == nil,
              record.rejection == nil else { return }
        let metadata = (try? UploadMetadata.parse(record.metadata)) ?? [:]
        do {
            let file = try await storeFile(at: try await uploadStore.localPath(job.uploadId, state: record.storeState), filename: metadata["filename"] ?? "file",
                                           claimedType: metadata["filetype"], ownerId: record.userId, uploadId: job.uploadId,
                                           contentSHA256: job.contentSHA256)
            try await uploads.setFile(uploadId: job.uploadId, fileId: file.id)
            // The bytes are the stored file's now; a store that kept a copy (S3's assembled
            // object) lets it go.
            try? await uploadStore.remove(job.uploadId)
        } catch DomainError.forbiddenType {
            try await uploads.reject(uploadId: job.uploadId, code: UploadRejection.forbiddenType)
            try? await uploadStore.remove(job.uploadId)
        }
    }

    /// Gives up on an upload whose processing kept failing: it is refused as `corrupt`, its
    /// bytes deleted, and its waiters woken.
    package func giveUp(on uploadId: String) async throws {
        defer { waiters.settle(uploadId) }
        try await uploads.reject(uploadId: uploadId, code: UploadRejection.corrupt)
        try? await uploadStore.remove(uploadId)
    }

    /// Runs the pipeline on the bytes at `path` and moves them into the file store, keeping the
    /// 320 px thumbnail the probe made in the same decode pass. The sniffed type is the truth:
    /// a type the policy forbids is deleted and refused (`forbidden_type`), and a client's
    /// `claimedType` that disagrees with it is kept in the attachment's `claimedMimeType`.
    package func storeFile(at path: String, filename: String, claimedType: String? = nil, ownerId: Int64,
                           uploadId: String?, contentSHA256: String? = nil) async throws -> StoredFile {
        let decoded = path + ".decoded.jpg"
        do {
            return try await storeProbed(at: path, filename: filename, claimedType: claimedType, ownerId: ownerId,
                                         uploadId: uploadId, contentSHA256: contentSHA256, keepingDecodedPictureAt: decoded)
        } catch {
            try? await threadPool.runIfActive { _ = unlink(decoded) }
            throw error
        }
    }

    private func storeProbed(at path: String, filename: String, claimedType: String?, ownerId: Int64, uploadId: String?,
                             contentSHA256: String?, keepingDecodedPictureAt decoded: String) async throws -> StoredFile {
        var eager = Self.eagerThumbnail
        eager.decodedPicturePath = decoded
        var knownSHA256 = contentSHA256
        if stripsLocation {
            // Before the probe, so that the stored bytes, their hash and every thumbnail agree.
            // A file that cannot be patched is stored as it is (a read-only upload directory
            // would also fail the move into the store, with a clearer error).
            let removal = try? await threadPool.runIfActive { try LocationMetadata.strip(fileAt: path) }
            if removal?.removedAnything == true { knownSHA256 = nil }
        }
        let started = ContinuousClock.now
        var report = try await processor.probe(fileAt: path, filename: filename, thumbnail: eager, knownSHA256: knownSHA256)
        Timer(label: "mediagate_pipeline_seconds", dimensions: [("type", report.attachment.type.rawValue)])
            .recordNanoseconds(Int64((ContinuousClock.now - started) / .nanoseconds(1)))
        let sniffed = report.attachment.mimeType ?? "application/octet-stream"
        if policy.forbids(sniffed) {
            try? await threadPool.runIfActive { _ = unlink(path) }
            throw DomainError.forbiddenType(sniffed)
        }
        if let claimedType = claimedType?.trimmingCharacters(in: .whitespaces), !claimedType.isEmpty,
           claimedType.split(separator: ";").first?.lowercased() != sniffed.lowercased() {
            report.attachment.claimedMimeType = String(claimedType.prefix(255))
        }
        let file = try await store.store(from: path, uploadId: uploadId, ownerId: ownerId, report: report)
        if let thumbnail = report.thumbnail {
            try? await thumbnails.save(thumbnail, to: thumbnails.cachePath(sha256: file.sha256, Self.eagerThumbnail))
        }
        // A large JPEG's decoded picture, kept for the thumbnails that follow (one per content).
        let keep = thumbnails.decodedPath(sha256: file.sha256)
        try? await threadPool.runIfActive {
            if access(decoded, F_OK) == 0, access(keep, F_OK) != 0, rename(decoded, keep) == 0 { return }
            _ = unlink(decoded)
        }
        return file
    }
}

/// Why a completed upload was not stored (`uploads.rejection`).
package enum UploadRejection {
    /// The sniffed type is one the policy refuses.
    package static let forbiddenType = "forbidden_type"
    /// Processing failed on every attempt (``ProcessingJobRunner/maxAttempts``).
    package static let corrupt = "corrupt"
}

/// tus `Upload-Metadata`: `key base64,key2 base64`.
package enum UploadMetadata {
    /// Keys are ASCII without spaces or commas, unique; values base64 (or absent).
    package static func parse(_ header: String?) throws(DomainError) -> [String: String] {
        guard let header, !header.isEmpty else { return [:] }
        var result = [String: String]()
        for pair in header.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = pair.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), let key = parts.first, !key.isEmpty, key.allSatisfy({ $0.isASCII }),
                  result[String(key)] == nil else {
                throw .badInput("Upload-Metadata is 'key base64value' pairs separated by commas")
            }
            if parts.count == 2 {
                guard let data = Data(base64Encoded: String(parts[1])) else {
                    throw .badInput("Upload-Metadata value for \(key) is not base64")
                }
                result[String(key)] = String(decoding: data, as: UTF8.self)
            } else {
                result[String(key)] = ""
            }
        }
        return result
    }
}
