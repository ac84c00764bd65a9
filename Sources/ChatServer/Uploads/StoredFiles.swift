import Crypto
import Foundation
import GRDB
import MediaPipeline
import NIOPosix

/// A file the server keeps: the pipeline's `Attachment` and where its bytes are.
struct StoredFile: Sendable, Equatable {
    var id: String
    /// The capability name, `<random>.<ext>`: whoever holds it may read the file without a
    /// header (when `capabilityURLs` is on). nil for files stored before names existed.
    var publicName: String?
    var uploadId: String?
    var ownerId: Int64
    var sha256: String
    var size: Int64
    var attachment: Attachment
    /// Set when the pipeline could not fully analyse the bytes (they are kept all the same).
    var errorCode: String?
}

/// Stored files and their blobs, `files/<sha256>`: identical content is kept once.
struct FileStore: Sendable {
    let pool: DatabasePool
    let directory: String
    var threadPool: NIOThreadPool = .singleton
    /// File rows never change once written, so every request for a popular file need not
    /// read SQLite and decode its attachment JSON again.
    let recent = MemoryCache<StoredFile>(capacity: 20_000)

    init(pool: DatabasePool, dataDirectory: String) throws {
        self.pool = pool
        directory = (dataDirectory as NSString).appendingPathComponent("files")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func blobPath(sha256: String) -> String { "\(directory)/\(sha256)" }

    /// Moves `source` into the blob store under its hash (or drops it if those bytes are
    /// already there), then records the file.
    func store(from source: String, uploadId: String?, ownerId: Int64, report: MediaReport) async throws -> StoredFile {
        let sha256 = report.attachment.sha256 ?? ""
        let target = blobPath(sha256: sha256)
        try await threadPool.runIfActive {
            if FileManager.default.fileExists(atPath: target) {
                _ = unlink(source)
            } else if rename(source, target) != 0 {
                throw UploadFileError.system("rename", errno)
            }
        }
        let id = TokenService.randomToken()
        let publicName = Self.publicName(filename: report.attachment.filename)
        var attachment = report.attachment
        attachment.url = "/api/files/\(id)"
        // Pictures, videos, PDFs and audio with cover art have something to draw.
        let hasPicture = attachment.blurhash != nil
        attachment.thumbnailUrl = hasPicture ? "/api/files/\(id)/thumbnail" : nil
        let file = StoredFile(id: id, publicName: publicName, uploadId: uploadId, ownerId: ownerId, sha256: sha256,
                              size: Int64(attachment.size ?? 0), attachment: attachment, errorCode: report.error?.code.description)
        let json = String(decoding: try JSONEncoder().encode(attachment), as: UTF8.self)
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO files (id, public_name, upload_id, owner_id, sha256, size, attachment, error_code, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [file.id, publicName, uploadId, ownerId, sha256, file.size, json, file.errorCode,
                                  Date().timeIntervalSince1970])
        }
        return file
    }

    /// A fresh capability name: 128 random bits (never derived from the content, which anyone
    /// holding the same bytes could compute) and the original name's extension, so that the
    /// seed's clients see a file name they can show.
    static func publicName(filename: String) -> String {
        let random = SymmetricKey(size: .bits128).withUnsafeBytes { Data($0) }.base64URLEncodedString()
        let ext = (filename as NSString).pathExtension.lowercased()
        let usable = (1...8).contains(ext.count) && ext.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
        return random + "." + (usable ? ext : "bin")
    }

    /// Deletes blobs that no file row names (the process died between moving the bytes in
    /// and recording them) and decoded pictures likewise. Only those last written before
    /// `cutoff`, so that a blob being stored right now is never taken. Returns how many went.
    func collectOrphans(decodedDirectory: String, writtenBefore cutoff: Date) async throws -> Int {
        let known = Set(try await pool.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT sha256 FROM files") })
        let blobs = directory
        return try await threadPool.runIfActive {
            var removed = 0
            for (folder, suffix) in [(blobs, ""), (decodedDirectory, ".jpg")] {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasSuffix(suffix) {
                    guard !known.contains(String(name.dropLast(suffix.count))) else { continue }
                    let path = "\(folder)/\(name)"
                    guard let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                          modified < cutoff else { continue }
                    if unlink(path) == 0 { removed += 1 }
                }
            }
            return removed
        }
    }

    /// Whether `userId` uploaded the file or is in a room where a message carries it.
    func canRead(fileId: String, userId: Int64) async throws -> Bool {
        try await pool.read { db in
            try Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM files WHERE id = ? AND owner_id = ?)
                    OR EXISTS (SELECT 1 FROM messages JOIN room_members ON room_members.room_id = messages.room_id
                               WHERE messages.file_id = ? AND room_members.user_id = ?)
                """, arguments: [fileId, userId, fileId, userId]) ?? false
        }
    }

    func file(id: String) async throws -> StoredFile? {
        try await cachedFile(key: id, column: "id")
    }

    /// The file with this capability name (`<random>.<ext>`).
    func file(publicName: String) async throws -> StoredFile? {
        try await cachedFile(key: publicName, column: "public_name")
    }

    /// One row by a unique column, kept in `recent` under the value (ids and capability names
    /// never collide: only names contain a dot).
    private func cachedFile(key: String, column: String) async throws -> StoredFile? {
        if let file = recent[key] { return file }
        let file = try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM files WHERE \(column) = ?", arguments: [key]).map(Self.file)
        }
        if let file { recent.insert(file, forKey: key) }
        return file
    }

    /// A file by either handle: ids never contain a dot, capability names always do.
    func file(named name: String) async throws -> StoredFile? {
        name.contains(".") ? try await file(publicName: name) : try await file(id: name)
    }

    private static func file(_ row: Row) throws -> StoredFile {
        let attachment = try JSONDecoder().decode(Attachment.self, from: Data((row["attachment"] as String).utf8))
        return StoredFile(id: row["id"], publicName: row["public_name"], uploadId: row["upload_id"], ownerId: row["owner_id"],
                          sha256: row["sha256"], size: row["size"], attachment: attachment, errorCode: row["error_code"])
    }
}

/// Turns completed uploads into stored files through the media pipeline, off the request path.
struct UploadCompletion: Sendable {
    let uploads: any UploadRepository
    let files: UploadFiles
    let store: FileStore
    let processor: MediaProcessor
    let thumbnails: Thumbnails
    let policy: UploadPolicy
    /// Whether pictures lose their location metadata before they are stored (`stripLocation`).
    var stripsLocation = true
    /// Requests waiting for an upload's processing to end.
    let waiters = UploadWaiters()

    /// The thumbnail made in the same decode pass as the probe, so chat can show it at once.
    static let eagerThumbnail = Thumbnails.request(width: 320, height: 320, fit: .contain, format: .jpeg)

    /// Processes one completed upload; safe to call again for the same one. Wakes the requests
    /// waiting for it however it ends. `contentSHA256`: the bytes' SHA-256 if the server already
    /// computed it while receiving them (a whole-upload `sha256` chunk checksum).
    func process(uploadId: String, contentSHA256: String? = nil) async throws {
        defer { waiters.settle(uploadId) }
        guard let record = try await uploads.upload(id: uploadId), record.completedAt != nil, record.fileId == nil,
              record.rejection == nil else { return }
        let metadata = (try? TusController.parseMetadata(record.metadata)) ?? [:]
        do {
            let file = try await storeFile(at: files.path(uploadId), filename: metadata["filename"] ?? "file",
                                           claimedType: metadata["filetype"], ownerId: record.userId, uploadId: uploadId,
                                           contentSHA256: contentSHA256)
            try await uploads.setFile(uploadId: uploadId, fileId: file.id)
        } catch let error as APIError where error.code == "forbidden_type" {
            try await uploads.reject(uploadId: uploadId, code: error.code)
        }
    }

    /// Runs the pipeline on the bytes at `path` and moves them into the file store, keeping the
    /// 320 px thumbnail the probe made in the same decode pass. The sniffed type is the truth:
    /// a type the policy forbids is deleted and refused (`forbidden_type`), and a client's
    /// `claimedType` that disagrees with it is kept in the attachment's `claimedMimeType`.
    func storeFile(at path: String, filename: String, claimedType: String? = nil, ownerId: Int64,
                   uploadId: String?, contentSHA256: String? = nil) async throws -> StoredFile {
        let decoded = path + ".decoded.jpg"
        do {
            return try await storeProbed(at: path, filename: filename, claimedType: claimedType, ownerId: ownerId,
                                         uploadId: uploadId, contentSHA256: contentSHA256, keepingDecodedPictureAt: decoded)
        } catch {
            try? await store.threadPool.runIfActive { _ = unlink(decoded) }
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
            let removal = try? await store.threadPool.runIfActive { try LocationMetadata.strip(fileAt: path) }
            if removal?.removedAnything == true { knownSHA256 = nil }
        }
        var report = try await processor.probe(fileAt: path, filename: filename, thumbnail: eager, knownSHA256: knownSHA256)
        let sniffed = report.attachment.mimeType ?? "application/octet-stream"
        if policy.forbids(sniffed) {
            try? await store.threadPool.runIfActive { _ = unlink(path) }
            throw UploadPolicy.forbiddenType(sniffed)
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
        try? await store.threadPool.runIfActive {
            if access(decoded, F_OK) == 0, access(keep, F_OK) != 0, rename(decoded, keep) == 0 { return }
            _ = unlink(decoded)
        }
        return file
    }

    /// Processes whatever completed without being processed (a restart in between).
    func processPending() async {
        for id in (try? await uploads.unprocessed()) ?? [] {
            try? await process(uploadId: id)
        }
    }
}
