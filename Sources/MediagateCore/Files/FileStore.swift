import Crypto
import Foundation
import MediaPipeline
import MediagateWire
import NIOPosix

/// A file the server keeps: the pipeline's `Attachment` and where its bytes are.
package struct StoredFile: Sendable, Equatable, Codable {
    package var id: String
    /// The capability name, `<random>.<ext>`: whoever holds it may read the file without a
    /// header (when `capabilityURLs` is on). nil for files stored before names existed.
    package var publicName: String?
    package var uploadId: String?
    package var ownerId: Int64
    package var sha256: String
    package var size: Int64
    package var attachment: Attachment
    /// Set when the pipeline could not fully analyse the bytes (they are kept all the same).
    package var errorCode: String?

    package init(id: String, publicName: String?, uploadId: String?, ownerId: Int64, sha256: String, size: Int64,
                 attachment: Attachment, errorCode: String?) {
        self.id = id
        self.publicName = publicName
        self.uploadId = uploadId
        self.ownerId = ownerId
        self.sha256 = sha256
        self.size = size
        self.attachment = attachment
        self.errorCode = errorCode
    }
}

/// Stored files: their rows (a ``FileRepository``) and their bytes (a ``BlobStore``, one blob
/// per content).
package struct FileStore: Sendable {
    package let files: any FileRepository
    package let blobs: any BlobStore
    /// File rows never change once written, so every request for a popular file need not
    /// read the database and decode its attachment again.
    package let recent = MemoryCache<StoredFile>(capacity: 20_000)

    package init(files: any FileRepository, blobs: any BlobStore) {
        self.files = files
        self.blobs = blobs
    }

    /// Moves `source` into the blob store under its hash (or drops it if those bytes are
    /// already there), then records the file.
    package func store(from source: String, uploadId: String?, ownerId: Int64, report: MediaReport) async throws -> StoredFile {
        let sha256 = report.attachment.sha256 ?? ""
        try await blobs.store(movingFileAt: source, sha256: sha256)
        let id = RandomToken.make()
        var attachment = report.attachment
        attachment.url = APIPath.file(id)
        // Pictures, videos, PDFs and audio with cover art have something to draw.
        attachment.thumbnailUrl = attachment.blurhash != nil ? APIPath.thumbnail(id) : nil
        let file = StoredFile(id: id, publicName: Self.publicName(filename: attachment.filename), uploadId: uploadId,
                              ownerId: ownerId, sha256: sha256, size: Int64(attachment.size ?? 0), attachment: attachment,
                              errorCode: report.error?.code.description)
        try await files.insert(file, createdAt: Date())
        return file
    }

    /// A fresh capability name: 128 random bits (never derived from the content, which anyone
    /// holding the same bytes could compute) and the original name's extension, so that the
    /// seed's clients see a file name they can show.
    package static func publicName(filename: String) -> String {
        let random = SymmetricKey(size: .bits128).withUnsafeBytes { Data($0) }.base64URLEncodedString()
        let ext = (filename as NSString).pathExtension.lowercased()
        let usable = (1...8).contains(ext.count) && ext.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
        return random + "." + (usable ? ext : "bin")
    }

    /// Deletes blobs that no file row names (the process died between moving the bytes in
    /// and recording them). Only those last written before `cutoff`, so that a blob being
    /// stored right now is never taken. Returns how many went.
    package func collectOrphans(writtenBefore cutoff: Date) async throws -> Int {
        try await blobs.removeOrphans(keeping: try await files.allSHA256(), writtenBefore: cutoff)
    }

    package func canRead(fileId: String, userId: Int64) async throws -> Bool {
        try await files.canRead(fileId: fileId, userId: userId)
    }

    package func file(id: String) async throws -> StoredFile? {
        try await cached(id) { try await files.file(id: id) }
    }

    /// The file with this capability name (`<random>.<ext>`).
    package func file(publicName: String) async throws -> StoredFile? {
        try await cached(publicName) { try await files.file(publicName: publicName) }
    }

    /// A file by either handle: ids never contain a dot, capability names always do (so the
    /// two never collide as keys of `recent` either).
    package func file(named name: String) async throws -> StoredFile? {
        name.contains(".") ? try await file(publicName: name) : try await file(id: name)
    }

    private func cached(_ key: String, _ load: () async throws -> StoredFile?) async throws -> StoredFile? {
        if let file = recent[key] { return file }
        let file = try await load()
        if let file { recent.insert(file, forKey: key) }
        return file
    }
}

/// Files in one directory that nothing names any more.
package enum OrphanFiles {
    /// Deletes files in `directory` ending in `suffix` whose name without it is not in `keep`
    /// and that were last written before `cutoff`. Returns how many went.
    package static func remove(in directory: String, suffix: String, keeping keep: Set<String>, writtenBefore cutoff: Date,
                               threadPool: NIOThreadPool) async throws -> Int {
        try await threadPool.runIfActive {
            var removed = 0
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasSuffix(suffix) {
                guard !keep.contains(String(name.dropLast(suffix.count))) else { continue }
                let path = "\(directory)/\(name)"
                guard let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                      modified < cutoff else { continue }
                if unlink(path) == 0 { removed += 1 }
            }
            return removed
        }
    }
}

/// Random identifiers for rows and tokens.
package enum RandomToken {
    /// 256 random bits, base64url.
    package static func make() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64URLEncodedString()
    }
}
