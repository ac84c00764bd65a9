import Foundation
import HTTPTypes
import Hummingbird
import Metrics
import MediagateCore
import MediagateWire
import NIOCore
import NIOHTTPTypes
import _NIOFileSystem

/// The IETF "Resumable Uploads for HTTP" draft in front of upload endpoints, on the same
/// ``UploadEngine`` as tus: durable offsets, one writer, quota, expiry, every node.
///
/// A request to an endpoint that carries `Upload-Draft-Interop-Version` (3, 5, 6, 7 or 8) and
/// the version's completeness header becomes an upload resource at `/api/uploads/<id>`,
/// announced at once by `104 Upload Resumption Supported`; the body is stored as it arrives. If
/// the connection drops, the client asks the resource where to resume (HEAD) and appends the
/// rest (PATCH). Once the body is complete, the endpoint runs on the whole of it and its
/// response is the final one: for `POST /api/upload-file`, exactly the JSON the plain request
/// gets. Requests without the draft's headers reach the endpoint untouched.
///
/// Two kinds of endpoint: one that hands its body to a request (``Target``, the seed's multipart
/// upload), and `POST /api/uploads` itself, where the body is the file and the pipeline
/// processes it as it does a tus upload.
struct ResumableUploadFront: Sendable {
    typealias Handler = @Sendable (Request, AuthenticatedContext) async throws -> Response
    typealias Version = ResumableDraft.InteropVersion

    /// An endpoint whose body may arrive resumably.
    struct Target: Sendable {
        let path: String
        /// The largest body it takes.
        let maxBytes: Int64
        let handler: Handler
    }

    let engine: UploadEngine
    /// The endpoints that take a completed upload's bytes, by name (``UploadHandoff/target``).
    let targets: [String: Target]

    // MARK: Routing

    /// Upload creation in front of the endpoint named `target` (nil: the body is a file for the
    /// pipeline); anything that is not a draft creation goes to `handler` as it came.
    func creating(_ target: String?, otherwise handler: @escaping Handler) -> Handler {
        { request, context in
            // A version this server does not speak gets no 104 (the draft forbids it): the
            // request is then an ordinary one.
            guard let version = try? Self.version(of: request),
                  let complete = Self.claimedCompleteness(request, version) else {
                return try await handler(request, context)
            }
            return try await answering(version, offset: nil) {
                try await create(request, context: context, version: version, complete: complete, target: target)
            }
        }
    }

    /// Offset retrieval, append and cancellation on `/api/uploads/<id>` for requests that name
    /// an interop version; tus requests go to `handler`.
    func resource(otherwise handler: @escaping Handler) -> Handler {
        { request, context in
            guard let version = try Self.version(of: request) else { return try await handler(request, context) }
            let claimed = request.headers[.uploadOffset].flatMap(ResumableDraft.integer)
            return try await answering(version, offset: claimed) {
                switch request.method {
                case .head: try await offset(request, context: context, version: version)
                case .patch: try await append(request, context: context, version: version, claimed: claimed)
                case .delete: try await cancel(request, context: context, version: version)
                default: try await handler(request, context)
                }
            }
        }
    }

    // MARK: Creation

    private func create(_ request: Request, context: AuthenticatedContext, version: Version, complete: Bool,
                        target name: String?) async throws -> Response {
        guard request.headers[.uploadOffset] == nil else {
            throw APIError.badRequest("an upload creation carries no Upload-Offset")
        }
        var length = declaredLength(request)
        let contentLength = request.headers[.contentLength].flatMap(Int64.init)
        if complete, let contentLength {
            // The whole representation in this request: its length is the body's.
            if let length, length != contentLength { throw inconsistentLength(version) }
            length = contentLength
        }
        var handoff: UploadHandoff?
        var metadata: String?
        if let name {
            guard let target = targets[name] else { throw APIError(.internalServerError, code: "internal", "no such upload endpoint") }
            handoff = UploadHandoff(target: name, contentType: request.headers[.contentType],
                                    contentDisposition: request.headers[.contentDisposition], maxBytes: target.maxBytes)
        } else {
            metadata = Self.metadata(contentType: request.headers[.contentType], disposition: request.headers[.contentDisposition])
        }
        let record = try await engine.create(userId: context.user.id, length: length, metadata: metadata, handoff: handoff)
        context.logger.info("resumable upload created", metadata: [
            "upload": "\(record.id)", "interop": "\(version.rawValue)", "target": "\(name ?? "file")",
        ])
        try await announce(record, version: version, channel: context.channel)
        var offset: Int64 = 0
        if Self.hasBody(request) {
            offset = try await receive(request, into: record, at: 0, declaredLength: nil, version: version, context: context)
        }
        if complete { return try await finish(record.id, request: request, context: context, version: version) }
        var headers = try await stateHeaders(engine.upload(id: record.id, userId: context.user.id), version: version)
        headers[.location] = APIPath.upload(record.id)
        headers[.uploadOffset] = String(offset)
        return Response(status: .created, headers: headers)
    }

    /// `104 Upload Resumption Supported` with the resource's URL, before any body byte is read.
    private func announce(_ record: UploadRecord, version: Version, channel: any Channel) async throws {
        var fields = HTTPFields()
        fields[.uploadDraftInteropVersion] = String(version.rawValue)
        fields[.location] = APIPath.upload(record.id)
        if version.announcesLimits { fields[.uploadLimit] = limits(record, version: version) }
        try await Self.interim(fields, on: channel)
    }

    // MARK: Offset retrieval, append, cancellation

    private func offset(_ request: Request, context: AuthenticatedContext, version: Version) async throws -> Response {
        try refuseState(request, version: version, what: "an offset retrieval")
        guard let id = context.parameters.get("uploadId") else { throw APIError.notFound("no such upload") }
        let record = try await engine.uploadForResumption(id: id, userId: context.user.id)
        var headers = stateHeaders(record, version: version)
        headers[.uploadOffset] = String(record.offset)
        if version >= .v7, let length = record.length { headers[.uploadLength] = String(length) }
        return Response(status: .noContent, headers: headers)
    }

    private func append(_ request: Request, context: AuthenticatedContext, version: Version, claimed: Int64?) async throws -> Response {
        if version.usesPartialUploadType, request.headers[.contentType]?.lowercased() != ResumableDraft.partialUploadType {
            throw APIError.unsupportedMediaType("appends are \(ResumableDraft.partialUploadType)")
        }
        guard let claimed else { throw APIError.badRequest("Upload-Offset must be a non-negative integer") }
        // Interop 3 leaves the header out of the append that ends the upload.
        guard let complete = Self.claimedCompleteness(request, version) ?? (version.saysIncomplete ? true : nil) else {
            throw APIError.badRequest("\(ResumableDraft.Header.complete) must be ?1 or ?0")
        }
        let record = try await owned(context)
        let hasBody = Self.hasBody(request)
        if record.completedAt != nil {
            // A client that never saw the last answer asks again with nothing more to send:
            // the endpoint's answer is made once more (or for the first time, if the server
            // stopped between storing the last bytes and handing them over).
            guard complete, !hasBody, claimed == record.offset else { throw completedUpload(version) }
            return try await finish(record.id, request: request, context: context, version: version)
        }
        var length = declaredLength(request)
        if complete, let contentLength = request.headers[.contentLength].flatMap(Int64.init) {
            if let length, length != claimed + contentLength { throw inconsistentLength(version) }
            length = claimed + contentLength
        }
        if let length, let known = record.length, length != known { throw inconsistentLength(version) }
        let offset = hasBody ? try await receive(request, into: record, at: claimed, declaredLength: length, version: version, context: context)
            : try await engine.append(to: record, claimedOffset: claimed, declaredLength: length, expectsBytes: false,
                                      body: request.body, checksum: nil, logger: context.logger)
        if complete { return try await finish(record.id, request: request, context: context, version: version) }
        var headers = try await stateHeaders(engine.upload(id: record.id, userId: context.user.id), version: version)
        headers[.uploadOffset] = String(offset)
        return Response(status: .init(code: version.appendStatus), headers: headers)
    }

    private func cancel(_ request: Request, context: AuthenticatedContext, version: Version) async throws -> Response {
        try refuseState(request, version: version, what: "a cancellation")
        try await engine.terminate(try await owned(context))
        return Response(status: .noContent)
    }

    /// Bytes stored in a row before the offset is made to count: a request's body is committed
    /// every so many, so a crash loses at most this much of a long single request.
    static let checkpointBytes: Int64 = 16 << 20

    /// Stores the request's body from `offset` on, a checkpoint at a time; from interop 5 on,
    /// each checkpoint is also told to the client as `104` with the new `Upload-Offset`.
    private func receive(_ request: Request, into record: UploadRecord, at offset: Int64, declaredLength: Int64?, version: Version,
                         context: AuthenticatedContext) async throws -> Int64 {
        let channel = context.channel
        let end = try await engine.appendInSegments(
            to: record, claimedOffset: offset, declaredLength: declaredLength, body: request.body, segmentBytes: Self.checkpointBytes,
            logger: context.logger
        ) { stored in
            guard version >= .v5 else { return }
            var fields = HTTPFields()
            fields[.uploadDraftInteropVersion] = String(version.rawValue)
            fields[.uploadOffset] = String(stored)
            try await Self.interim(fields, on: channel)
        }
        Self.countBytes(end - offset)
        return end
    }

    /// Writes a `104` interim response on the request's connection.
    private static func interim(_ fields: HTTPFields, on channel: any Channel) async throws {
        let status = HTTPResponse.Status(code: ResumableDraft.resumptionSupported, reasonPhrase: ResumableDraft.resumptionSupportedReason)
        try await channel.writeAndFlush(HTTPResponsePart.head(HTTPResponse(status: status, headerFields: fields)))
    }

    // MARK: Completion

    /// The body is all there: the upload is completed (its length fixed where it stands if it
    /// was never said), then the endpoint answers for it.
    private func finish(_ id: String, request: Request, context: AuthenticatedContext, version: Version) async throws -> Response {
        var record = try await engine.upload(id: id, userId: context.user.id)
        if record.completedAt == nil {
            _ = try await engine.complete(record, logger: context.logger)
            record = try await engine.upload(id: id, userId: context.user.id)
        }
        guard let handoff = record.handoff else {
            // A file for the pipeline: the answer says where to follow its processing, as tus's
            // `GET /api/uploads/<id>` does.
            var response = try TusController.json(["upload_id": record.id, "status": UploadStatusJSON.processing], status: .created)
            response.headers[.location] = APIPath.upload(record.id)
            response.headers[.uploadOffset] = String(record.offset)
            response.headers.setCompleteness(true, version)
            return response
        }
        guard let target = targets[handoff.target] else {
            throw APIError(.internalServerError, code: "internal", "the upload's endpoint is gone")
        }
        var response: Response
        do {
            response = try await replay(record, handoff: handoff, to: target, request: request, context: context)
        } catch {
            var refusal = APIError(mapping: error) ?? APIError(.internalServerError, code: "internal", "internal error")
            if refusal.status.code >= 500 {
                context.logger.error("resumable upload's endpoint failed", metadata: ["upload": "\(record.id)", "error": "\(error)"])
            } else {
                // The endpoint refused the body: sending it again would not change that.
                try? await engine.terminate(record)
            }
            refusal.headers.setCompleteness(true, version)
            throw refusal
        }
        // Answered: the resource has done its work (the draft lets it go at once).
        try? await engine.terminate(record)
        response.headers.setCompleteness(true, version)
        return response
    }

    /// Runs the endpoint on the upload's bytes, as if they had come in one request with the
    /// headers that began the upload.
    private func replay(_ record: UploadRecord, handoff: UploadHandoff, to target: Target, request: Request,
                        context: AuthenticatedContext) async throws -> Response {
        let path = try await engine.completedBytes(record)
        var fields = HTTPFields()
        fields[.contentType] = handoff.contentType
        fields[.contentDisposition] = handoff.contentDisposition
        fields[.contentLength] = String(record.offset)
        let (body, source) = RequestBody.makeStream()
        let head = HTTPRequest(method: .post, scheme: request.head.scheme, authority: request.head.authority, path: target.path,
                               headerFields: fields)
        var replayContext = context
        replayContext.replaysResumableUpload = true
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { file in
                        for try await chunk in file.readChunks(chunkLength: .kibibytes(256)) {
                            try Task.checkCancellation()
                            await source.yield(chunk)
                        }
                    }
                    source.finish()
                } catch {
                    source.finish(error)
                }
            }
            defer { group.cancelAll() }
            return try await target.handler(Request(head: head, body: body), replayContext)
        }
    }

    // MARK: Answers

    /// Runs `work`, answering the draft's own refusals (a wrong offset, a completed upload, an
    /// inconsistent length) in the shape of `version`.
    private func answering(_ version: Version, offset claimed: Int64?, _ work: () async throws -> Response) async throws -> Response {
        do {
            return try await work()
        } catch DomainError.offsetMismatch(let current, let message) {
            var headers: HTTPFields = [.uploadOffset: String(current)]
            headers.setCompleteness(false, version)
            guard version.usesProblemTypes else { throw APIError(.conflict, code: "offset_mismatch", message, headers: headers) }
            var problem: [String: JSONValue] = [
                "type": .string(ResumableDraft.Problem.mismatchingOffset),
                "title": .string("offset from request does not match offset of resource"),
                "expected-offset": .number(Double(current)),
            ]
            if let claimed { problem["provided-offset"] = .number(Double(claimed)) }
            return try Self.problem(problem, status: .conflict, headers: headers)
        } catch let refusal as DraftRefusal {
            return try Self.problem(["type": .string(refusal.type), "title": .string(refusal.title)], status: .badRequest, headers: [:])
        }
    }

    /// A refusal the draft gives a problem type to (interop 6 on).
    private struct DraftRefusal: Error {
        let type: String
        let title: String
    }

    private func completedUpload(_ version: Version) -> any Error {
        let title = "the upload is complete; nothing can be appended"
        return version.usesProblemTypes ? DraftRefusal(type: ResumableDraft.Problem.completedUpload, title: title)
            : APIError(.badRequest, code: "upload_complete", title)
    }

    private func inconsistentLength(_ version: Version) -> any Error {
        let title = "inconsistent length values for upload"
        return version >= .v7 ? DraftRefusal(type: ResumableDraft.Problem.inconsistentLength, title: title)
            : APIError(.badRequest, code: "inconsistent_length", title)
    }

    private static func problem(_ fields: [String: JSONValue], status: HTTPResponse.Status, headers: HTTPFields) throws -> Response {
        var headers = headers
        headers[.contentType] = "application/problem+json"
        return Response(status: status, headers: headers,
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(JSONValue.object(fields)))))
    }

    /// Completeness, limits and no caching: what every answer about the resource says.
    private func stateHeaders(_ record: UploadRecord, version: Version) -> HTTPFields {
        var headers: HTTPFields = [.cacheControl: "no-store"]
        headers.setCompleteness(record.completedAt != nil, version)
        if version.announcesLimits { headers[.uploadLimit] = limits(record, version: version) }
        return headers
    }

    /// `max-size` (the endpoint's or the upload limit) and the resource's remaining lifetime.
    private func limits(_ record: UploadRecord, version: Version) -> String {
        let lifetime = max(0, Int64(record.expiresAt.timeIntervalSinceNow.rounded(.down)))
        return ResumableDraft.limitHeader(["max-size": engine.largest(record.handoff), version.lifetimeLimitKey: lifetime])
    }

    // MARK: Reading requests

    /// The request's interop version: nil without the header; refused when it is one this
    /// server does not speak.
    static func version(of request: Request) throws -> Version? {
        guard let value = request.headers[.uploadDraftInteropVersion] else { return nil }
        guard let number = ResumableDraft.integer(value), let version = Version(rawValue: Int(number)) else {
            throw APIError(.badRequest, code: "unsupported_interop_version",
                           "Upload-Draft-Interop-Version \(value) is not served; this server speaks \(ResumableDraft.supportedVersions)")
        }
        return version
    }

    /// What the request says of completeness in `version`'s header, if anything.
    private static func claimedCompleteness(_ request: Request, _ version: Version) -> Bool? {
        version.claimsComplete { request.headers[HTTPField.Name($0)!] }
    }

    /// `Upload-Length`, if sent; a value that is not a non-negative integer is ignored, as the draft asks.
    private func declaredLength(_ request: Request) -> Int64? {
        request.headers[.uploadLength].flatMap(ResumableDraft.integer)
    }

    /// Interop 3-6 refuse offset retrieval and cancellation that carry upload state.
    private func refuseState(_ request: Request, version: Version, what: String) throws {
        let completeness = HTTPField.Name(version.completeness(true).name)!
        if version.refusesStateOnHeadAndDelete, request.headers[.uploadOffset] != nil || request.headers[completeness] != nil {
            throw APIError.badRequest("\(what) carries neither Upload-Offset nor \(completeness)")
        }
    }

    private func owned(_ context: AuthenticatedContext) async throws -> UploadRecord {
        guard let id = context.parameters.get("uploadId") else { throw APIError.notFound("no such upload") }
        return try await engine.upload(id: id, userId: context.user.id)
    }

    private static func hasBody(_ request: Request) -> Bool {
        (request.headers[.contentLength].flatMap(Int64.init) ?? 0) > 0 || request.headers[.transferEncoding] != nil
    }

    /// tus-style metadata for a file sent as the body: its name from `Content-Disposition`,
    /// its claimed type from `Content-Type`.
    static func metadata(contentType: String?, disposition: String?) -> String? {
        var pairs: [String] = []
        if let name = disposition.flatMap(Self.filename) { pairs.append("filename \(Data(name.utf8).base64EncodedString())") }
        if let type = contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces), !type.isEmpty,
           type.lowercased() != ResumableDraft.partialUploadType {
            pairs.append("filetype \(Data(type.utf8).base64EncodedString())")
        }
        return pairs.isEmpty ? nil : pairs.joined(separator: ",")
    }

    /// The file name in a `Content-Disposition` value: `filename*=UTF-8''…` (RFC 6266) before `filename="…"`.
    static func filename(in disposition: String) -> String? {
        var plain: String?
        for parameter in disposition.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { continue }
            switch pair[0].lowercased() {
            case "filename*":
                let parts = pair[1].split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
                if parts.count == 3, parts[0].lowercased() == "utf-8", let decoded = String(parts[2]).removingPercentEncoding, !decoded.isEmpty {
                    return decoded
                }
            case "filename":
                plain = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            default: continue
            }
        }
        return plain?.isEmpty == false ? plain : nil
    }

    /// `mediagate_upload_bytes_total{protocol="ietf"}`.
    private static func countBytes(_ bytes: Int64) {
        if bytes > 0 { Counter(label: "mediagate_upload_bytes_total", dimensions: [("protocol", "ietf")]).increment(by: Int(bytes)) }
    }
}

extension HTTPFields {
    /// The completeness header as `version` writes it (`Upload-Incomplete` in interop 3).
    mutating func setCompleteness(_ complete: Bool, _ version: ResumableDraft.InteropVersion) {
        let field = version.completeness(complete)
        self[HTTPField.Name(field.name)!] = field.value
    }
}

extension HTTPField.Name {
    static let uploadDraftInteropVersion = Self(ResumableDraft.Header.interopVersion)!
    static let uploadLimit = Self(ResumableDraft.Header.limit)!
}
