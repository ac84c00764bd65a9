import Foundation

/// What the server accepts from a user: how many bytes they may keep, and which sniffed
/// types it refuses to store. Both upload paths (tus and multipart) ask the same policy.
struct UploadPolicy: Sendable {
    /// Bytes one user may hold: stored files plus the declared lengths of unfinished uploads.
    /// nil: no quota.
    var quotaBytes: Int64?
    /// Sniffed MIME types that are refused. An entry ending in `/*` covers a whole family.
    var forbiddenTypes: [String]

    init(configuration: ChatConfiguration) {
        quotaBytes = configuration.userQuotaBytes > 0 ? configuration.userQuotaBytes : nil
        forbiddenTypes = configuration.forbiddenMimeTypes.map { $0.lowercased() }
    }

    init(quotaBytes: Int64?, forbiddenTypes: [String]) {
        self.quotaBytes = quotaBytes
        self.forbiddenTypes = forbiddenTypes.map { $0.lowercased() }
    }

    /// Whether a (sniffed or claimed) MIME type is refused. Parameters (`; charset=…`) are ignored.
    func forbids(_ mimeType: String) -> Bool {
        let type = mimeType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return forbiddenTypes.contains { rule in
            rule.hasSuffix("/*") ? type.hasPrefix(rule.dropLast()) : type == rule
        }
    }

    /// Bytes `userId` may still add, given what they hold now; nil when there is no quota.
    func remaining(using inUse: Int64) -> Int64? {
        quotaBytes.map { max(0, $0 - inUse) }
    }

    static func quotaExceeded(_ quota: Int64) -> APIError {
        APIError(.contentTooLarge, code: "quota_exceeded",
                 "this would take you past your storage quota of \(quota) bytes; delete files or finish other uploads first")
    }

    static func forbiddenType(_ mimeType: String) -> APIError {
        APIError(.unsupportedMediaType, code: "forbidden_type", "files of type \(mimeType) are not accepted here")
    }
}
