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
/// Durability: a PATCH's bytes are written, `fdatasync`ed, and only then is the new offset
/// stored and answered. After a crash the stored offset never counts a byte that is not on
/// disk, and bytes past it are cut off when the next PATCH opens the file. (`durable: false`
/// skips the `fdatasync`: a server crash still loses nothing acknowledged, a power cut may.)
///
/// Policy comes before bytes: a length past `Tus-Max-Size` or the user's quota, or a claimed
/// `filetype` the policy forbids, is refused at creation; the sniffed type is checked again
/// when the upload completes.
struct TusController: Sendable {
    let uploads: any UploadRepository
    let files: any UploadStore
    let writers: any UploadLocker
    let ingest: AttachmentIngest
    /// Rung after a completed upload's processing job is stored, so this node starts it at once.
    let jobDoorbell: Doorbell
    let store: FileStore
    let rooms: any RoomRepository
    let policy: UploadPolicy
    let maxSize: Int64
    let expiry: TimeInterval
    /// `fdatasync` before acknowledging an offset (``ChatConfiguration/durableUploads``).
    let durable: Bool

    static let version = Tus.version
    static let extensions = Tus.extensions

    /// `OPTIONS /api/uploads`: discovery, without authentication as the protocol expects.
    var publicEndpoints: RouteCollection<ChatRequestContext> {
        let routes = RouteCollection(context: ChatRequestContext.self)
        routes.on("", method: .options) { _, _ in
            var headers = Self.baseHeaders
            headers[.tusVersion] = Self.version
            headers[.tusExtension] = Self.extensions
            headers[.tusMaxSize] = String(maxSize)
            headers[.tusChecksumAlgorithm] = ChunkChecksum.algorithms
            return Response(status: .noContent, headers: headers)
        }
        return routes
    }

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post(use: create)
        routes.head(":uploadId", use: status)
        routes.get(":uploadId", use: result)
        routes.patch(":uploadId", use: append)
        routes.delete(":uploadId", use: terminate)
        return routes
    }

    static var baseHeaders: HTTPFields {
        [.tusResumable: version, .cacheControl: "no-store"]
    }

    // MARK: Handlers

    /// `POST`: creation (and creation-with-upload when a body comes along).
    @Sendable func create(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        try Self.checkVersion(request)
        try policy.checkStart(userId: context.user.id)
        var length: Int64?
        if let value = request.headers[.uploadLength] {
            guard let parsed = Int64(value), parsed >= 0 else { throw APIError.badRequest("Upload-Length must be a non-negative integer") }
            length = parsed
        } else if request.headers[.uploadDeferLength] != "1" {
            throw APIError.badRequest("Upload-Length or Upload-Defer-Length: 1 is required")
        }
        if let length, length > maxSize {
            throw APIError.tooLarge("the upload is larger than Tus-Max-Size (\(maxSize) bytes)")
        }
        let metadata = request.headers[.uploadMetadata]
        let parsed = try Self.parseMetadata(metadata)
        if let length {
            try await checkQuota(adding: length, userId: context.user.id)
            try policy.checkDisk(adding: length)
        }
        if let claimed = parsed["filetype"], policy.forbids(claimed) { throw DomainError.forbiddenType(claimed) }
        if let roomValue = parsed["room_id"] {
            guard let roomId = Int64(roomValue), try await rooms.isMember(roomId: roomId, userId: context.user.id) else {
                throw APIError.notFound("no such room")
            }
        }
        let now = Date()
        let record = UploadRecord(id: RandomToken.make(), userId: context.user.id, length: length, offset: 0,
                                  metadata: metadata, createdAt: now, expiresAt: now.addingTimeInterval(expiry))
        // The check above answers most refusals cheaply; this one, in the insert's transaction,
        // holds against creations racing each other.
        switch try await uploads.create(record, quota: policy.quotaBytes, maxOpen: policy.maxOpenUploads) {
        case .created: break
        case .overQuota: throw policy.quotaExceeded
        case .tooManyOpen:
            throw DomainError.rateLimited(retryAfter: 60, what: "unfinished uploads (at most \(policy.maxOpenUploads ?? 0)); finish or delete some")
        }
        do { try await files.create(record.id) } catch {
            try? await uploads.delete(id: record.id)
            throw error
        }

        var headers = Self.baseHeaders
        headers[.location] = "/api/uploads/\(record.id)"
        headers[.uploadExpires] = Self.httpDate(record.expiresAt)
        if request.headers[.contentType] == "application/offset+octet-stream" {
            let offset = try await receive(request, into: record, context: context)
            headers[.uploadOffset] = String(offset)
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
        var record = try await ownedUpload(context)
        if wait > 0, record.completedAt != nil, record.rejection == nil, record.fileId == nil {
            // Once: a wake-up means processing ended, whether or not it made a file (a failure
            // stays 202 until the sweeper's retry), so the answer is whatever is there now.
            await ingest.waiters.next(record.id, timeout: .seconds(wait))
            record = try await ownedUpload(context)
        }
        guard record.completedAt != nil else {
            throw DomainError.uploadIncomplete(offset: record.offset, length: record.length)
        }
        if let rejection = record.rejection {
            throw DomainError.uploadRefused(code: rejection)
        }
        guard let fileId = record.fileId, let file = try await store.file(id: fileId) else {
            return try Self.json(UploadStatusJSON(status: UploadStatusJSON.processing), status: .accepted)
        }
        return try Self.json(UploadStatusJSON(status: UploadStatusJSON.ready, fileId: file.id, attachment: file.attachment,
                                              error: file.errorCode), status: .ok)
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
        guard request.headers[.contentType] == "application/offset+octet-stream" else {
            throw APIError.unsupportedMediaType("PATCH bodies are application/offset+octet-stream")
        }
        var record = try await ownedUpload(context)
        guard let claimed = request.headers[.uploadOffset].flatMap(Int64.init), claimed >= 0 else {
            throw APIError.badRequest("Upload-Offset must be a non-negative integer")
        }
        guard claimed == record.offset else {
            throw DomainError.offsetMismatch(current: record.offset, "the upload is at offset \(record.offset), not \(claimed)")
        }
        if record.completedAt != nil {
            // A finished upload was handed to the pipeline once. A client retrying a last PATCH
            // it never saw answered is told it is done, without the file (which is in the blob
            // store by now) being opened again or the upload processed twice.
            guard (request.headers[.contentLength].flatMap(Int.init) ?? 0) == 0 else {
                throw APIError.tooLarge("the upload is complete; no bytes can follow")
            }
            var headers = Self.baseHeaders
            headers[.uploadOffset] = String(record.offset)
            return Response(status: .noContent, headers: headers)
        }
        if record.length == nil, let value = request.headers[.uploadLength] {
            guard let length = Int64(value), length >= record.offset else {
                throw APIError.badRequest("Upload-Length must not be below the current offset")
            }
            guard length <= maxSize else { throw APIError.tooLarge("the upload is larger than Tus-Max-Size (\(maxSize) bytes)") }
            // The quota already counts what arrived; only the rest is new.
            try await checkQuota(adding: length - record.offset, userId: context.user.id)
            try policy.checkDisk(adding: length - record.offset)
            record.length = length
        }
        let offset = try await receive(request, into: record, context: context)
        var headers = Self.baseHeaders
        headers[.uploadOffset] = String(offset)
        headers[.uploadExpires] = Self.httpDate(record.expiresAt)
        return Response(status: .noContent, headers: headers)
    }

    /// `DELETE`: termination.
    @Sendable func terminate(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        try Self.checkVersion(request)
        let record = try await ownedUpload(context)
        let lease = await writers.acquire(record.id) // stop anyone still writing
        try await uploads.delete(id: record.id)
        try await files.remove(record.id)
        await writers.release(record.id, lease)
        return Response(status: .noContent, headers: [.tusResumable: Self.version])
    }

    // MARK: Receiving bytes

    /// Streams the body to disk at the record's offset, checks the chunk's checksum, makes it
    /// durable, then stores and returns the new offset.
    private func receive(_ request: Request, into record: UploadRecord, context: AuthenticatedContext) async throws -> Int64 {
        var checksum: (ChunkChecksum, Data)?
        if let header = request.headers[.uploadChecksum] {
            let parts = header.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let expected = Data(base64Encoded: String(parts[1])) else {
                throw APIError.badRequest("Upload-Checksum is '<algorithm> <base64 digest>'")
            }
            guard let algorithm = ChunkChecksum(algorithm: String(parts[0])) else {
                throw APIError.badRequest("unsupported checksum algorithm; use one of \(ChunkChecksum.algorithms)")
            }
            checksum = (algorithm, expected)
        }
        var limit = record.length ?? maxSize
        if record.length == nil, let room = try await policy.remaining(for: context.user.id, in: uploads) {
            limit = min(limit, record.offset + room)
        }
        let lease = await writers.acquire(record.id)
        // Read again as the upload's writer: a request taken over may have stored a new offset
        // since this one read it, and opening at the old one would cut those bytes away.
        let current = try? await uploads.upload(id: record.id)
        guard let current, current.offset == record.offset else {
            await writers.release(record.id, lease)
            var headers: HTTPFields = [.tusResumable: Self.version]
            if let current { headers[.uploadOffset] = String(current.offset) }
            throw APIError(.conflict, code: "offset_mismatch", "the upload moved on while this request waited for it", headers: headers)
        }
        let writer: any UploadAppender
        do { writer = try await files.openForAppend(record.id, at: record.offset, lease: lease) } catch {
            await writers.release(record.id, lease)
            throw error
        }
        do {
            for try await chunk in request.body {
                // Checked before a batch is written, so a writer that was taken over stops
                // within a MiB; checking every socket read cost an actor hop per 64 KiB.
                if writer.fillsBatch(adding: chunk.readableBytes),
                   await !writers.isCurrent(record.id, lease) {
                    throw APIError.conflict("another request took this upload over")
                }
                // The bytes past the stored offset are cut off when the upload is next opened;
                // truncating here could cut a newer writer's bytes instead.
                guard writer.end + Int64(chunk.readableBytes) <= limit else {
                    if record.length == nil, limit < maxSize { throw policy.quotaExceeded }
                    throw APIError.tooLarge("the body runs past Upload-Length (\(limit) bytes)")
                }
                try await writer.append(chunk)
                checksum?.0.update(chunk)
            }
            if let (algorithm, expected) = checksum, algorithm.finalize() != expected {
                throw DomainError.checksumMismatch(offset: record.offset)
            }
            guard await writers.beginCommit(record.id, lease) else { throw DomainError.uploadTakenOver }
            if durable { try await writer.sync() } else { try await writer.finish() }
            let offset = writer.offset
            let complete = record.length.map { offset == $0 } ?? false
            // A chunk that was the whole upload has a verified checksum that is the content's
            // hash when it is SHA-256: the pipeline need not read the file again for it.
            let contentSHA256 = complete && record.offset == 0 ? checksum.flatMap { $0.0.isSHA256 ? $0.1.hexString : nil } : nil
            // A completing upload stores its processing job in the same transaction: the pipeline
            // runs off the request (GET answers 202 until it is done), on whichever node's
            // runner takes the job; a crash before it ends leaves the job to be taken again.
            try await uploads.advance(id: record.id, to: offset, length: record.length, completedAt: complete ? Date() : nil,
                                      processing: complete ? ProcessingJob(uploadId: record.id, contentSHA256: contentSHA256) : nil)
            Counter(label: "mediagate_upload_bytes_total", dimensions: [("protocol", "tus")]).increment(by: Int(offset - record.offset))
            await writer.close()
            await writers.release(record.id, lease)
            if complete {
                context.logger.info("upload complete", metadata: ["upload": "\(record.id)", "bytes": "\(offset)"])
                jobDoorbell.ring()
            }
            return offset
        } catch {
            // A dropped connection keeps what was synced earlier; this request's bytes past the
            // stored offset are cut off by the next PATCH.
            await writer.close()
            await writers.release(record.id, lease)
            throw error
        }
    }

    // MARK: Helpers

    /// 413 `quota_exceeded` when `bytes` more would take the user past their quota.
    private func checkQuota(adding bytes: Int64, userId: Int64) async throws {
        if let room = try await policy.remaining(for: userId, in: uploads), bytes > room { throw policy.quotaExceeded }
    }

    private func ownedUpload(_ context: AuthenticatedContext) async throws -> UploadRecord {
        guard let id = context.parameters.get("uploadId"), let record = try await uploads.upload(id: id),
              record.userId == context.user.id else {
            throw APIError.notFound("no such upload")
        }
        if record.completedAt == nil, record.expiresAt <= Date() {
            throw DomainError.uploadExpired
        }
        return record
    }

    static func checkVersion(_ request: Request) throws {
        guard request.headers[.tusResumable] == version else {
            throw APIError(.preconditionFailed, code: "unsupported_version", "Tus-Resumable must be \(version)",
                           headers: [.tusVersion: version])
        }
    }

    /// `key base64,key2 base64` (``UploadMetadata``).
    static func parseMetadata(_ header: String?) throws -> [String: String] {
        try UploadMetadata.parse(header)
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
}
