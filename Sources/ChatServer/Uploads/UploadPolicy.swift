import Foundation
import HTTPTypes

/// What the server accepts from a user: how many bytes they may keep, and which sniffed
/// types it refuses to store. Both upload paths (tus and multipart) ask the same policy.
struct UploadPolicy: Sendable {
    /// Bytes one user may hold: stored files plus the declared lengths of unfinished uploads.
    /// nil: no quota.
    var quotaBytes: Int64?
    /// Sniffed MIME types that are refused. An entry ending in `/*` covers a whole family.
    var forbiddenTypes: [String]
    /// Uploads started per user (`rateLimits.uploadsPerUser`): every creation is a database row
    /// and a file kept for a day, even one that never receives a byte.
    let starts: RateLimiter
    /// Free bytes the data directory's file system keeps whatever the quotas allow: a full disk
    /// would fail every write, the database's included.
    let minFreeDiskBytes: Int64
    let dataDirectory: String
    /// Unfinished tus uploads one user may hold (nil: any number): each is a row and a file
    /// kept until it expires, even one that never receives a byte.
    let maxOpenUploads: Int?

    init(configuration: ChatConfiguration) {
        quotaBytes = configuration.userQuotaBytes > 0 ? configuration.userQuotaBytes : nil
        forbiddenTypes = configuration.forbiddenMimeTypes.map { $0.lowercased() }
        starts = RateLimiter(configuration.rateLimits.uploadsPerUser)
        minFreeDiskBytes = configuration.minFreeDiskBytes
        dataDirectory = configuration.dataDirectory
        maxOpenUploads = configuration.maxOpenUploadsPerUser > 0 ? configuration.maxOpenUploadsPerUser : nil
    }

    /// 429 when `userId` has started uploads faster than the limit allows; 507 when the disk
    /// is down to its floor.
    func checkStart(userId: Int64) throws {
        try starts.check(String(userId), "uploads started")
        try checkDisk(adding: 0)
    }

    /// 507 `insufficient_storage` when `bytes` more would take the data directory's file system
    /// below `minFreeDiskBytes` (one `statvfs`, no I/O).
    func checkDisk(adding bytes: Int64) throws {
        guard minFreeDiskBytes > 0 else { return }
        var stats = statvfs()
        guard statvfs(dataDirectory, &stats) == 0 else { return }
        let free = Int64(stats.f_bavail) * Int64(stats.f_frsize)
        guard free - bytes >= minFreeDiskBytes else {
            throw APIError(HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), code: "insufficient_storage",
                           "the server is short of disk space; try again later")
        }
    }

    /// Whether a (sniffed or claimed) MIME type is refused. Parameters (`; charset=…`) are ignored.
    func forbids(_ mimeType: String) -> Bool {
        let type = mimeType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return forbiddenTypes.contains { rule in
            rule.hasSuffix("/*") ? type.hasPrefix(rule.dropLast()) : type == rule
        }
    }

    /// Bytes `userId` may still add, given what they hold now; nil when there is no quota.
    func remaining(for userId: Int64, in uploads: any UploadRepository) async throws -> Int64? {
        guard let quotaBytes else { return nil }
        return max(0, quotaBytes - (try await uploads.bytesInUse(userId: userId, at: Date())))
    }

    /// 413 `quota_exceeded`.
    var quotaExceeded: APIError {
        APIError(.contentTooLarge, code: "quota_exceeded",
                 "this would take you past your storage quota of \(quotaBytes ?? 0) bytes; delete files or finish other uploads first")
    }

    static func forbiddenType(_ mimeType: String) -> APIError {
        APIError(.unsupportedMediaType, code: "forbidden_type", "files of type \(mimeType) are not accepted here")
    }
}
