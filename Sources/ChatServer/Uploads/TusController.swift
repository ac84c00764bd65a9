import Foundation
import Metrics
import HTTPTypes
import Hummingbird
import MediaPipeline
import MediagateCore
import MediagateWire
import NIOCore

/// tus 1.0 resumable uploads at `/api/uploads/`: core protocol plus the creation,
/// creation-with-upload, creation-defer-length, termination, checksum and expiration
/// extensions.
///
/// The rules (policy before bytes, one writer, durable offsets, the processing job) are
/// ``UploadEngine``'s; this controller reads tus headers and writes tus responses. With
/// `durableUploads: false` the engine skips the `fdatasync`: a server crash still loses
/// nothing acknowledged, a power cut may.
struct TusController: Sendable {
    /// The rules; this controller speaks tus on top of them.
    let engine: UploadEngine

    static let version = Tus.version
    static let extensions = Tus.extensions

    /// `OPTIONS /api/uploads`: discovery, without authentication as the protocol expects.
    var publicEndpoints: RouteCollection<ChatRequestContext> {
        let routes = RouteCollection(context: ChatRequestContext.self)
        routes.on("", method: .options) { _, _ in
            var headers = Self.baseHeaders
            headers[.tusVersion] = Self.version
            headers[.tusExtension] = Self.extensions
            headers[.tusMaxSize] = String(engine.maxSize)
            headers[.tusChecksumAlgorithm] = ChunkChecksum.algorithms
            // The IETF draft (interop 8) asks creation endpoints to say their limits and the
            // append media types here.
            headers[.uploadLimit] = ResumableDraft.limitHeader(["max-size": engine.maxSize])
            headers[.acceptPatch] = "\(ResumableDraft.partialUploadType), \(Tus.chunkContentType)"
            return Response(status: .noContent, headers: headers)
        }
        return routes
    }

    /// The routes, with the IETF draft's requests (they name an interop version) taken by
    /// `resumable` on the same URLs: creation here, offset, append and cancellation on an upload.
    func endpoints(resumable: ResumableUploadFront) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post(use: resumable.creating(nil, otherwise: create))
        routes.head(":uploadId", use: resumable.resource(otherwise: status))
        routes.get(":uploadId", use: result)
        routes.patch(":uploadId", use: resumable.resource(otherwise: append))
        routes.delete(":uploadId", use: resumable.resource(otherwise: terminate))
        return routes
    }

    static var baseHeaders: HTTPFields {
        [.tusResumable: version, .cacheControl: "no-store"]
    }

    // MARK: Handlers

    /// `POST`: creation (and creation-with-upload when a body comes along).
    @Sendable func create(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        try Self.checkVersion(request)
        var length: Int64?
        if let value = request.headers[.uploadLength] {
            guard let parsed = Int64(value), parsed >= 0 else { throw APIError.badRequest("Upload-Length must be a non-negative integer") }
            length = parsed
        } else if request.headers[.uploadDeferLength] != "1" {
            throw APIError.badRequest("Upload-Length or Upload-Defer-Length: 1 is required")
        }
        let record = try await engine.create(userId: context.user.id, length: length, metadata: request.headers[.uploadMetadata])
        var headers = Self.baseHeaders
        headers[.location] = APIPath.upload(record.id)
        headers[.uploadExpires] = Self.httpDate(record.expiresAt)
        if request.headers[.contentType] == Tus.chunkContentType {
            let offset = try await engine.append(to: record, claimedOffset: 0, declaredLength: nil, expectsBytes: true, body: request.body,
                                                 checksum: try Self.checksum(request), logger: context.logger)
            headers[.uploadOffset] = String(offset)
            Self.countBytes(offset)
        }
        context.logger.info("upload created", metadata: ["upload": "\(record.id)", "length": "\(length.map(String.init) ?? "deferred")"])
        return Response(status: .created, headers: headers)
    }

    /// `HEAD`: where to resume.
    @Sendable func status(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        try Self.checkVersion(request)
        let record = try await ownedUpload(context)
        var headers = Self.baseHeaders
        headers[.uploadOffset] = String(record.offset)
        if let length = record.length { headers[.uploadLength] = String(length) } else { headers[.uploadDeferLength] = "1" }
        if let metadata = record.metadata { headers[.uploadMetadata] = metadata }
        if record.completedAt == nil { headers[.uploadExpires] = Self.httpDate(record.expiresAt) }
        return Response(status: .ok, headers: headers)
    }

    /// `GET`: what the upload became: 409 while bytes are missing, 202 while the pipeline
    /// works, then 200 with the file id and its attachment. With `?wait=N` (seconds, at most
    /// 30) a 202 is held back until processing ends or N seconds pass.
    @Sendable func result(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        let wait = try request.uri.queryParameters["wait"].map { value -> Int in
            guard let seconds = Int(value), (0...Self.longestWait).contains(seconds) else {
                throw APIError.badRequest("wait is a number of seconds, 0-\(Self.longestWait)")
            }
            return seconds
        } ?? 0
        switch try await engine.outcome(of: try uploadId(context), userId: context.user.id, wait: wait > 0 ? .seconds(wait) : nil) {
        case .processing:
            return try Self.json(UploadStatusJSON(status: UploadStatusJSON.processing), status: .accepted)
        case .stored(let file):
            return try Self.json(UploadStatusJSON(status: UploadStatusJSON.ready, fileId: file.id, attachment: file.attachment,
                                                  error: file.errorCode), status: .ok)
        }
    }

    /// The longest `?wait=` a status request may ask for.
    static let longestWait = 30

    static func json(_ object: some Encodable, status: HTTPResponse.Status) throws -> Response {
        let data = try JSONEncoder().encode(object)
        return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// `PATCH`: append bytes at the current offset.
    @Sendable func append(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        try Self.checkVersion(request)
        guard request.headers[.contentType] == Tus.chunkContentType else {
            throw APIError.unsupportedMediaType("PATCH bodies are \(Tus.chunkContentType)")
        }
        let record = try await ownedUpload(context)
        guard let claimed = request.headers[.uploadOffset].flatMap(Int64.init), claimed >= 0 else {
            throw APIError.badRequest("Upload-Offset must be a non-negative integer")
        }
        var declared: Int64?
        if let value = request.headers[.uploadLength] {
            guard let length = Int64(value) else { throw APIError.badRequest("Upload-Length must not be below the current offset") }
            declared = length
        }
        let offset = try await engine.append(to: record, claimedOffset: claimed, declaredLength: declared,
                                             expectsBytes: (request.headers[.contentLength].flatMap(Int.init) ?? 0) > 0,
                                             body: request.body, checksum: try Self.checksum(request), logger: context.logger)
        Self.countBytes(offset - claimed)
        var headers = Self.baseHeaders
        headers[.uploadOffset] = String(offset)
        if record.completedAt == nil { headers[.uploadExpires] = Self.httpDate(record.expiresAt) }
        return Response(status: .noContent, headers: headers)
    }

    /// `DELETE`: termination.
    @Sendable func terminate(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        try Self.checkVersion(request)
        try await engine.terminate(try await ownedUpload(context))
        return Response(status: .noContent, headers: [.tusResumable: Self.version])
    }

    // MARK: Helpers

    /// `mediagate_upload_bytes_total{protocol="tus"}`.
    private static func countBytes(_ bytes: Int64) {
        if bytes > 0 { Counter(label: "mediagate_upload_bytes_total", dimensions: [("protocol", "tus")]).increment(by: Int(bytes)) }
    }

    /// `Upload-Checksum: <algorithm> <base64 digest>`, if sent.
    static func checksum(_ request: Request) throws -> UploadEngine.Checksum? {
        guard let header = request.headers[.uploadChecksum] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, let expected = Data(base64Encoded: String(parts[1])) else {
            throw APIError.badRequest("Upload-Checksum is '<algorithm> <base64 digest>'")
        }
        guard let algorithm = ChunkChecksum(algorithm: String(parts[0])) else {
            throw APIError.badRequest("unsupported checksum algorithm; use one of \(ChunkChecksum.algorithms)")
        }
        return (algorithm, expected)
    }

    private func uploadId(_ context: AuthenticatedContext) throws -> String {
        guard let id = context.parameters.get("uploadId") else { throw APIError.notFound("no such upload") }
        return id
    }

    private func ownedUpload(_ context: AuthenticatedContext) async throws -> UploadRecord {
        try await engine.upload(id: try uploadId(context), userId: context.user.id)
    }

    static func checkVersion(_ request: Request) throws {
        guard request.headers[.tusResumable] == version else {
            throw APIError(.preconditionFailed, code: "unsupported_version", "Tus-Resumable must be \(version)",
                           headers: [.tusVersion: version])
        }
    }

    static func httpDate(_ date: Date) -> String {
        HTTPDateText.format(Int(date.timeIntervalSince1970.rounded(.down)))
    }
}

extension HTTPField.Name {
    static let tusResumable = Self(Tus.Header.resumable)!
    static let tusVersion = Self(Tus.Header.version)!
    static let tusExtension = Self(Tus.Header.extensions)!
    static let tusMaxSize = Self(Tus.Header.maxSize)!
    static let tusChecksumAlgorithm = Self(Tus.Header.checksumAlgorithm)!
    static let uploadOffset = Self(Tus.Header.offset)!
    static let uploadLength = Self(Tus.Header.length)!
    static let uploadDeferLength = Self(Tus.Header.deferLength)!
    static let uploadMetadata = Self(Tus.Header.metadata)!
    static let uploadChecksum = Self(Tus.Header.checksum)!
    static let uploadExpires = Self(Tus.Header.expires)!
    static let acceptPatch = Self("Accept-Patch")!
}
