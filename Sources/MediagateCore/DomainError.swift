/// What the domain refuses, in its own words. The server layer maps each case to an HTTP
/// status and error code in one place (`APIError.init(_:)` in ChatServer); nothing here knows
/// about HTTP.
package enum DomainError: Error, Equatable, Sendable {
    /// The request is malformed (a header or value that does not parse): 400.
    case badInput(String)
    /// The thing does not exist, or the caller may not know it does (a private room).
    case notFound(String)
    /// The request is well-formed but makes no sense (empty text, an unknown emoji).
    case invalid(String)
    /// Too big for a limit (message length, an upload's declared length).
    case tooLarge(String)
    /// The state moved on under the request.
    case conflict(String)
    /// A sniffed or claimed MIME type the policy refuses.
    case forbiddenType(String)
    /// Past the user's storage quota.
    case quotaExceeded(quotaBytes: Int64)
    /// Over a rate or a count limit; may be retried after `retryAfter` seconds.
    case rateLimited(retryAfter: Int, what: String)
    /// The server's disk is down to its floor.
    case insufficientStorage
    /// The object store cannot be reached or refused the server; worth a retry shortly.
    case storageUnavailable(String)

    // Resumable uploads.
    /// The client's offset is not the upload's.
    case offsetMismatch(current: Int64, String)
    /// Bytes are missing: the upload is at `offset` of `length`.
    case uploadIncomplete(offset: Int64, length: Int64?)
    /// The upload expired before it completed.
    case uploadExpired
    /// The upload completed and was refused (`code`: `forbidden_type`, or `corrupt` when its
    /// processing failed too often); its bytes are gone.
    case uploadRefused(code: String)
    /// The chunk's checksum does not match; the upload stays at `offset`.
    case checksumMismatch(offset: Int64)
    /// Another request took the upload over while this one was writing.
    case uploadTakenOver
}
