import Foundation

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

    init(configuration: ChatConfiguration) {
        quotaBytes = configuration.userQuotaBytes > 0 ? configuration.userQuotaBytes : nil
        forbiddenTypes = configuration.forbiddenMimeTypes.map { $0.lowercased() }
        starts = RateLimiter(configuration.rateLimits.uploadsPerUser)
    }

    /// 429 when `userId` has started uploads faster than the limit allows.
    func checkStart(userId: Int64) throws {
        try starts.check(String(userId), "uploads started")
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
