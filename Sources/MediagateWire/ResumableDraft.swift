import Foundation

/// "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload), the successor of tus
/// that iOS 17+'s URLSession speaks by itself, as this gateway speaks it: the interop versions
/// and what differs between them. Server and client read the same table.
///
/// A client names the draft iteration it implements in `Upload-Draft-Interop-Version`; header
/// names and statuses changed between iterations, so every answer follows the version asked.
public enum ResumableDraft {
    public enum Header {
        public static let interopVersion = "Upload-Draft-Interop-Version"
        /// Interop 3 only: `?1` while the upload is not complete (the opposite of `Upload-Complete`).
        public static let incomplete = "Upload-Incomplete"
        /// Interop 4 on.
        public static let complete = "Upload-Complete"
        public static let offset = "Upload-Offset"
        /// Interop 6 (draft -05) on: the length of the whole representation.
        public static let length = "Upload-Length"
        /// Interop 6 on: a structured dictionary of the server's limits.
        public static let limit = "Upload-Limit"
    }

    /// The media type of append bodies from interop 6 on.
    public static let partialUploadType = "application/partial-upload"
    /// The informational status that announces an upload resource.
    public static let resumptionSupported = 104
    public static let resumptionSupportedReason = "Upload Resumption Supported"

    /// Problem types (RFC 9457) the drafts define from interop 6 on.
    public enum Problem {
        public static let mismatchingOffset = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
        public static let completedUpload = "https://iana.org/assignments/http-problem-types#completed-upload"
        public static let inconsistentLength = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
    }

    /// The interop versions served, each with the draft revisions that carry it and who sends it.
    public enum InteropVersion: Int, CaseIterable, Sendable, Comparable {
        /// draft -01; iOS 17.0, macOS 14.
        case v3 = 3
        /// draft -03; iOS 18.0.
        case v5 = 5
        /// drafts -04 and -05; iOS 18.1.
        case v6 = 6
        /// drafts -06 to -08.
        case v7 = 7
        /// draft -09 onward; iOS 26.
        case v8 = 8

        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

        /// Whether completeness is said by `Upload-Incomplete` (interop 3) rather than `Upload-Complete`.
        public var saysIncomplete: Bool { self == .v3 }
        /// Appends must be `application/partial-upload`; errors use the problem types.
        public var usesPartialUploadType: Bool { self >= .v6 }
        public var usesProblemTypes: Bool { self >= .v6 }
        /// Responses carry `Upload-Limit`.
        public var announcesLimits: Bool { self >= .v6 }
        /// The limit on the resource's lifetime: `expires` in interop 6, `max-age` after.
        public var lifetimeLimitKey: String { self == .v6 ? "expires" : "max-age" }
        /// An append that leaves the upload incomplete is answered `201 Created` with the new
        /// offset up to interop 6; from interop 7 on, `204 No Content`.
        public var appendStatus: Int { self >= .v7 ? 204 : 201 }
        /// Offset retrieval and cancellation must carry neither offset nor completeness (interop 3-6).
        public var refusesStateOnHeadAndDelete: Bool { self <= .v6 }

        /// The completeness header as this version writes it: (name, structured boolean).
        public func completeness(_ complete: Bool) -> (name: String, value: String) {
            saysIncomplete ? (Header.incomplete, complete ? "?0" : "?1") : (Header.complete, complete ? "?1" : "?0")
        }

        /// The completeness a request claims in this version's header; nil when the header is
        /// missing or not a structured boolean. Interop 3's header may be left out of an append
        /// whose body ends the upload.
        public func claimsComplete(headerValue: (String) -> String?) -> Bool? {
            if saysIncomplete {
                guard let value = headerValue(Header.incomplete) else { return nil }
                return ResumableDraft.boolean(value).map { !$0 }
            }
            return headerValue(Header.complete).flatMap(ResumableDraft.boolean)
        }
    }

    public static var supportedVersions: String { InteropVersion.allCases.map { String($0.rawValue) }.joined(separator: ", ") }

    /// A structured-field Boolean (`?1`, `?0`); nil for anything else.
    public static func boolean(_ value: String) -> Bool? {
        switch value.trimmingCharacters(in: .whitespaces) {
        case "?1": true
        case "?0": false
        default: nil
        }
    }

    /// A structured-field non-negative Integer (at most 15 digits, as RFC 9651 allows); nil otherwise.
    public static func integer(_ value: String) -> Int64? {
        let digits = value.trimmingCharacters(in: .whitespaces)
        guard !digits.isEmpty, digits.count <= 15, digits.allSatisfy(\.isASCIIDigit) else { return nil }
        return Int64(digits)
    }

    /// `Upload-Limit`'s dictionary, e.g. `max-size=1073741824, max-age=86400`.
    public static func limitHeader(_ limits: KeyValuePairs<String, Int64>) -> String {
        limits.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
    }

    /// Reads `Upload-Limit`: known keys with Integer values (others ignored, as the draft asks).
    public static func parseLimits(_ value: String) -> [String: Int64] {
        var limits: [String: Int64] = [:]
        for member in value.split(separator: ",") {
            let pair = member.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, let number = integer(pair[1]) { limits[pair[0]] = number }
        }
        return limits
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
