import Foundation
import Hummingbird
import MediagateCore
import MediagateWire

/// An error a client sees: `{"error": {"code": "...", "message": "..."}}` with its status.
///
/// Errors choose their own response, so handlers just `throw`.
public struct APIError: Error, HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, code: String, _ message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public static func badRequest(_ message: String) -> APIError { APIError(.badRequest, code: "bad_request", message) }
    public static func unauthorized(_ message: String) -> APIError {
        APIError(.unauthorized, code: "unauthorized", message, headers: [.wwwAuthenticate: "Bearer"])
    }
    public static func forbidden(_ message: String) -> APIError { APIError(.forbidden, code: "forbidden", message) }
    /// Also what a non-member gets for a room, so that room ids reveal nothing.
    public static func notFound(_ message: String = "not found") -> APIError { APIError(.notFound, code: "not_found", message) }
    public static func conflict(_ message: String) -> APIError { APIError(.conflict, code: "conflict", message) }
    public static func tooLarge(_ message: String) -> APIError { APIError(.contentTooLarge, code: "too_large", message) }
    public static func unsupportedMediaType(_ message: String) -> APIError {
        APIError(.unsupportedMediaType, code: "unsupported_media_type", message)
    }
    public static func unprocessable(_ message: String) -> APIError { APIError(.unprocessableContent, code: "invalid", message) }
    public static func tooManyRequests(retryAfter seconds: Int, _ what: String = "failed attempts") -> APIError {
        APIError(.tooManyRequests, code: "too_many_requests", "too many \(what); retry in \(seconds) s",
                 headers: [.retryAfter: String(seconds)])
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try JSONEncoder().encode(ErrorBody(code: code, message: message))
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension APIError {
    /// What the client sees for each domain refusal: the one place domain errors become HTTP.
    init(_ error: DomainError) {
        switch error {
        case .badInput(let message): self = .badRequest(message)
        case .notFound(let message): self = .notFound(message)
        case .invalid(let message): self = .unprocessable(message)
        case .tooLarge(let message): self = .tooLarge(message)
        case .conflict(let message): self = .conflict(message)
        case .forbiddenType(let type):
            self.init(.unsupportedMediaType, code: "forbidden_type", "files of type \(type) are not accepted here")
        case .quotaExceeded(let quota):
            self.init(.contentTooLarge, code: "quota_exceeded",
                      "this would take you past your storage quota of \(quota) bytes; delete files or finish other uploads first")
        case .rateLimited(let seconds, let what): self = .tooManyRequests(retryAfter: seconds, what)
        case .insufficientStorage:
            self.init(HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), code: "insufficient_storage",
                      "the server is short of disk space; try again later")
        case .storageUnavailable:
            // The detail names the store's address and answer: for the log, not the client.
            self.init(.serviceUnavailable, code: "storage_unavailable", "file storage is unavailable; retry shortly",
                      headers: [.retryAfter: "2"])
        case .offsetMismatch(let current, let message):
            self.init(.conflict, code: "offset_mismatch", message,
                      headers: [.uploadOffset: String(current), .tusResumable: Tus.version])
        case .uploadIncomplete(let offset, let length):
            self.init(.conflict, code: "incomplete", "the upload is at \(offset) of \(length.map(String.init) ?? "?") bytes",
                      headers: [.uploadOffset: String(offset)])
        case .uploadExpired: self.init(.gone, code: "gone", "the upload expired")
        case .uploadRefused(let code):
            self.init(.unprocessableContent, code: code, "the upload was refused by the server (\(code)); its bytes were deleted")
        case .checksumMismatch(let offset):
            self.init(HTTPResponse.Status(code: 460, reasonPhrase: "Checksum Mismatch"), code: "checksum_mismatch",
                      "the chunk's checksum does not match; it was discarded",
                      headers: [.uploadOffset: String(offset), .tusResumable: Tus.version])
        case .uploadTakenOver: self = .conflict("another request took this upload over")
        }
    }

    /// `error` as the client should see it, if it is one the client may see (an `APIError` or a
    /// `DomainError`); nil for anything else.
    init?(mapping error: any Error) {
        switch error {
        case let error as APIError: self = error
        case let error as DomainError: self.init(error)
        default: return nil
        }
    }
}

/// Turns every error that is not already an `APIError` into the JSON error shape, so that no
/// handler leaks a plain-text or HTML error body.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as DomainError {
            throw APIError(error)
        } catch let error as HTTPError {
            throw APIError(error.status, code: Self.code(for: error.status), error.body ?? error.status.reasonPhrase, headers: error.headers)
        } catch let error as DecodingError {
            throw APIError.badRequest("the request body is not the expected JSON: \(Self.describe(error))")
        } catch let error as any HTTPResponseError {
            throw APIError(error.status, code: Self.code(for: error.status), error.status.reasonPhrase)
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)"])
            throw APIError(.internalServerError, code: "internal", "internal error")
        }
    }

    static func code(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: "bad_request"
        case 401: "unauthorized"
        case 403: "forbidden"
        case 404: "not_found"
        case 405: "method_not_allowed"
        case 409: "conflict"
        case 413: "too_large"
        case 415: "unsupported_media_type"
        case 422: "invalid"
        case 429: "too_many_requests"
        default: status.code >= 500 ? "internal" : "error"
        }
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): "missing key '\(key.stringValue)'"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            "wrong type at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
        case .dataCorrupted(let context): context.debugDescription
        @unknown default: "invalid"
        }
    }
}
