import Foundation

/// What the server accepts from a user: how many bytes they may keep, and which sniffed
/// types it refuses to store. Both upload paths (tus and multipart) ask the same policy.
package struct UploadPolicy: Sendable {
    /// Bytes one user may hold: stored files plus the declared lengths of unfinished uploads.
    /// nil: no quota.
    package var quotaBytes: Int64?
    /// Sniffed MIME types that are refused. An entry ending in `/*` covers a whole family.
    package var forbiddenTypes: [String]
    /// Uploads started per user (`rateLimits.uploadsPerUser`): every creation is a database row
    /// and a file kept for a day, even one that never receives a byte.
    package let starts: RateLimiter
    /// Free bytes the data directory's file system keeps whatever the quotas allow: a full disk
    /// would fail every write, the database's included.
    package let minFreeDiskBytes: Int64
    package let dataDirectory: String
    /// Unfinished tus uploads one user may hold (nil: any number): each is a row and a file
    /// kept until it expires, even one that never receives a byte.
    package let maxOpenUploads: Int?

    /// `quotaBytes` and `maxOpenUploads` of 0 or less: no limit.
    package init(quotaBytes: Int64, forbiddenTypes: [String], starts: RateLimit, minFreeDiskBytes: Int64, dataDirectory: String,
                 maxOpenUploads: Int) {
        self.quotaBytes = quotaBytes > 0 ? quotaBytes : nil
        self.forbiddenTypes = forbiddenTypes.map { $0.lowercased() }
        self.starts = RateLimiter(starts, name: "upload_starts")
        self.minFreeDiskBytes = minFreeDiskBytes
        self.dataDirectory = dataDirectory
        self.maxOpenUploads = maxOpenUploads > 0 ? maxOpenUploads : nil
    }

    /// Refused when `userId` has started uploads faster than the limit allows, or the disk is
    /// down to its floor.
    package func checkStart(userId: Int64) throws {
        try starts.check(String(userId), "uploads started")
        try checkDisk(adding: 0)
    }

    /// `insufficientStorage` when `bytes` more would take the data directory's file system
    /// below `minFreeDiskBytes` (one `statvfs`, no I/O).
    package func checkDisk(adding bytes: Int64) throws {
        guard minFreeDiskBytes > 0 else { return }
        var stats = statvfs()
        guard statvfs(dataDirectory, &stats) == 0 else { return }
        let free = Int64(stats.f_bavail) * Int64(stats.f_frsize)
        guard free - bytes >= minFreeDiskBytes else {
            throw DomainError.insufficientStorage
        }
    }

    /// Whether a (sniffed or claimed) MIME type is refused. Parameters (`; charset=…`) are ignored.
    package func forbids(_ mimeType: String) -> Bool {
        let type = mimeType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return forbiddenTypes.contains { rule in
            rule.hasSuffix("/*") ? type.hasPrefix(rule.dropLast()) : type == rule
        }
    }

    /// Bytes `userId` may still add, given what they hold now; nil when there is no quota.
    package func remaining(for userId: Int64, in uploads: any UploadRepository) async throws -> Int64? {
        guard let quotaBytes else { return nil }
        return max(0, quotaBytes - (try await uploads.bytesInUse(userId: userId, at: Date())))
    }

    /// `quota_exceeded`.
    package var quotaExceeded: DomainError { .quotaExceeded(quotaBytes: quotaBytes ?? 0) }
}
