import Foundation
import Hummingbird
import HummingbirdCore
import HTTPTypes
import MediaPipeline
import MediagateCore
import MediagateWire

/// `GET`/`HEAD /api/files/{fileId}`: a stored file, to the members of a room it was posted in
/// (and its uploader) with a Bearer token, or to anyone holding a signed URL. `{fileId}` may
/// also be the file's capability name (`<random>.<ext>`, the upload's `filename`), which reads
/// it with no header at all while `capabilityURLs` is on.
///
/// Served with the sniffed type, `nosniff`, a sandboxing CSP, an ETag from the SHA-256,
/// single-range `Range` support, and `Content-Disposition: inline` only for types a browser
/// shows without running them; everything else (HTML, SVG, XML, …) is an attachment.
struct FileController: Sendable {
    let store: FileStore
    let tokens: TokenService
    let signer: URLSigner
    let thumbnails: Thumbnails
    let capabilityURLs: Bool
    let fileIO = FileIO()

    /// Types shown inline. Anything a browser could execute or parse as a document is absent.
    static let inlineTypes: Set<String> = [
        "image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/heic", "image/heif", "image/bmp",
        "video/mp4", "video/webm", "video/quicktime", "audio/mpeg", "audio/mp4", "audio/ogg", "audio/webm",
        "audio/flac", "audio/x-flac", "audio/x-wav", "audio/aac", "application/pdf",
        "video/3gpp", "video/3gpp2", "audio/3gpp", "audio/3gpp2", "audio/x-aiff", "audio/x-ms-wma", "video/x-ms-asf",
    ]

    var endpoints: RouteCollection<ChatRequestContext> {
        let routes = RouteCollection(context: ChatRequestContext.self)
        routes.get(":fileId", use: serve)
        routes.head(":fileId", use: serve)
        routes.get(":fileId/thumbnail", use: thumbnail)
        return routes
    }

    /// `GET /api/files/{id}/thumbnail?w=&h=&fit=cover|contain&format=jpeg|webp|png`.
    @Sendable func thumbnail(_ request: Request, context: ChatRequestContext) async throws -> Response {
        let (file, byCapability) = try await requestedFile(context)
        let query = request.uri.queryParameters
        if !byCapability { try await authorise(request, query: query, file: file, variant: "thumbnail") }
        let asked = try Self.thumbnailRequest(query: query, accept: request.headers[.accept])
        // A plain file has nothing to draw, and media kept as one failed to decode already.
        guard file.attachment.type != .file else {
            throw APIError(.notFound, code: "no_thumbnail", "\(file.attachment.filename) is delivered as a plain file, with no picture")
        }
        let thumbnail: (bytes: ByteBuffer, name: String)
        do {
            let blobs = store.blobs, sha256 = file.sha256
            thumbnail = try await thumbnails.thumbnailBytes(blob: { try await blobs.localPath(sha256: sha256) }, sha256: file.sha256,
                                                            picture: file.attachment, request: asked.request,
                                                            decodedFor: AttachmentIngest.eagerThumbnail)
        } catch let error as MediaError {
            switch error.code {
            case .overloaded: throw APIError(.serviceUnavailable, code: "overloaded", "thumbnail work is queued full; retry shortly", headers: [.retryAfter: "1"])
            case .noThumbnail, .unsupported: throw APIError(.notFound, code: "no_thumbnail", error.message)
            default: throw APIError.unprocessable("no thumbnail can be made: \(error.message)")
            }
        }
        let headers = Self.thumbnailHeaders(format: asked.request.format, name: thumbnail.name, variesByAccept: asked.variesByAccept)
        if request.headers[.ifNoneMatch] == headers[.eTag] { return Response(status: .notModified, headers: headers) }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: thumbnail.bytes))
    }

    /// The thumbnail a query asks for (`w`, `h`, `fit`, `format`), snapped to the ladder. Without
    /// `format` it is chosen from `Accept` (WebP where accepted), and the answer varies by it.
    static func thumbnailRequest(query: FlatDictionary<Substring, Substring>,
                                 accept: String?) throws -> (request: ThumbnailRequest, variesByAccept: Bool) {
        func dimension(_ name: String) throws -> Int? {
            try query[Substring(name)].map {
                guard let value = Int(String($0)), (1...10_000).contains(value) else { throw APIError.badRequest("\(name) must be 1-10000") }
                return value
            }
        }
        let fit = try query["fit"].map {
            guard let fit = ThumbnailRequest.Fit(rawValue: String($0)) else { throw APIError.badRequest("fit is cover or contain") }
            return fit
        } ?? .contain
        let format: ThumbnailRequest.Format
        let varies: Bool
        if let value = query["format"] {
            guard let chosen = ThumbnailRequest.Format(rawValue: String(value)) else { throw APIError.badRequest("format is jpeg, webp or png") }
            (format, varies) = (chosen, false)
        } else {
            (format, varies) = (accept?.contains("image/webp") == true ? .webp : .jpeg, true)
        }
        return (Thumbnails.request(width: try dimension("w"), height: try dimension("h"), fit: fit, format: format), varies)
    }

    /// A thumbnail's response headers; `name` is its cache name, which is also its ETag.
    static func thumbnailHeaders(format: ThumbnailRequest.Format, name: String, variesByAccept: Bool) -> HTTPFields {
        var headers: HTTPFields = [:]
        if variesByAccept { headers[.vary] = "Accept" }  // so caches key on it
        headers[.contentType] = format.mimeType
        headers[.eTag] = "\"\(name)\""
        headers[.cacheControl] = "private, max-age=31536000, immutable"
        headers[.xContentTypeOptions] = "nosniff"
        headers[.contentDisposition] = "inline"
        return headers
    }

    @Sendable func serve(_ request: Request, context: ChatRequestContext) async throws -> Response {
        let (file, byCapability) = try await requestedFile(context)
        if !byCapability { try await authorise(request, query: request.uri.queryParameters, file: file, variant: "original") }
        let mimeType = Self.servedType(of: file.attachment)
        let etag = "\"\(file.sha256)\""
        var headers: HTTPFields = [
            .contentType: mimeType,
            .eTag: etag,
            .cacheControl: "private, max-age=31536000, immutable",
            .acceptRanges: "bytes",
            .xContentTypeOptions: "nosniff",
            .contentSecurityPolicy: "sandbox; default-src 'none'",
            .contentDisposition: Self.disposition(for: file.attachment, mimeType: mimeType),
        ]
        if let match = request.headers[.ifNoneMatch], match.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == etag || $0 == "*" }) {
            return Response(status: .notModified, headers: headers)
        }
        let size = Int(file.size)
        var status = HTTPResponse.Status.ok
        var range = 0...max(0, size - 1)
        if let header = request.headers[.range] {
            switch Self.parseRange(header, size: size) {
            case .some(.some(let satisfiable)):
                range = satisfiable
                status = .partialContent
                headers[.contentRange] = "bytes \(satisfiable.lowerBound)-\(satisfiable.upperBound)/\(size)"
            case .some(.none):
                headers[.contentRange] = "bytes */\(size)"
                return Response(status: .rangeNotSatisfiable, headers: headers)
            case .none:
                break // not a single byte range we understand: the whole file
            }
        }
        headers[.contentLength] = String(size == 0 ? 0 : range.count)
        if request.method == .head || size == 0 {
            return Response(status: status, headers: headers)
        }
        switch try await store.blobs.read(sha256: file.sha256, range: Int64(range.lowerBound)...Int64(range.upperBound)) {
        case .file(let path):
            return Response(status: status, headers: headers, body: try await fileIO.loadFile(path: path, range: range, context: context))
        case .stream(let bytes):
            return Response(status: status, headers: headers, body: ResponseBody(asyncSequence: bytes))
        }
    }

    /// The file the path names, and whether the name is its capability (which is then enough).
    private func requestedFile(_ context: ChatRequestContext) async throws -> (StoredFile, byCapability: Bool) {
        guard let name = context.parameters.get("fileId"), let file = try await store.file(named: name) else {
            throw APIError.notFound("no such file")
        }
        let byCapability = name == file.publicName
        if byCapability, !capabilityURLs { throw APIError.notFound("no such file") }
        return (file, byCapability)
    }

    /// Signed URL, else Bearer token of the uploader or of a member of a room it was posted in.
    private func authorise(_ request: Request, query: FlatDictionary<Substring, Substring>, file: StoredFile, variant: String) async throws {
        if query["sig"] != nil || query["exp"] != nil {
            switch signer.verify(fileId: file.id, variant: variant, expiry: query["exp"].map(String.init), signature: query["sig"].map(String.init)) {
            case .valid: return
            case .expired: throw APIError.forbidden("the signed URL has expired")
            case .invalid: throw APIError.forbidden("the URL's signature is not valid")
            }
        }
        guard let token = AccessTokenMiddleware.bearerToken(in: request) else { throw APIError.unauthorized("an access token or a signed URL is required") }
        let user = try await tokens.verify(accessToken: token).user
        guard try await store.canRead(fileId: file.id, userId: user.id) else { throw APIError.notFound("no such file") }
    }

    /// The Content-Type a file is sent with: its sniffed type, except for image, audio and
    /// video bytes delivered as a plain `file` (undecodable or over the limits), which go out
    /// as opaque bytes so that no browser or player tries to decode them after all.
    static func servedType(of attachment: Attachment) -> String {
        let sniffed = attachment.mimeType ?? "application/octet-stream"
        let family = sniffed.split(separator: "/").first ?? ""
        if attachment.type == .file, ["image", "video", "audio"].contains(family) { return "application/octet-stream" }
        return sniffed
    }

    static func disposition(for attachment: Attachment, mimeType: String) -> String {
        let name = FileName.sanitized(attachment.filename)
        let ascii = String(name.unicodeScalars.map { $0.isASCII && $0 != "\"" && $0 != "\\" ? Character($0) : "_" })
        let encoded = name.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: ".-_"))) ?? ascii
        let kind = inlineTypes.contains(mimeType) ? "inline" : "attachment"
        return "\(kind); filename=\"\(ascii)\"; filename*=UTF-8''\(encoded)"
    }

    /// nil: no usable single range (serve everything); .some(nil): unsatisfiable (416).
    static func parseRange(_ header: String, size: Int) -> ClosedRange<Int>?? {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst(6).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard spec.count == 2 else { return nil }
        let first = Int(spec[0].trimmingCharacters(in: .whitespaces)), last = Int(spec[1].trimmingCharacters(in: .whitespaces))
        switch (first, last) {
        case (let start?, let end):
            guard start < size else { return .some(nil) }
            let stop = min(end ?? size - 1, size - 1)
            return stop >= start ? .some(start...stop) : nil
        case (nil, let suffix?):
            guard suffix > 0, size > 0 else { return .some(nil) }
            return .some(max(0, size - suffix)...(size - 1))
        default:
            return nil
        }
    }
}

extension HTTPField.Name {
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
}
