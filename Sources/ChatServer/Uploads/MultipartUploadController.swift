import Foundation
import Metrics
import Hummingbird
import MultipartKit
import NIOCore
import MediagateCore
import MediagateWire

/// `POST /api/upload-file`: the seed article's multipart upload (field `file`), streamed to
/// disk part by part, never held whole in memory; answers 200 with the seed's keys (`filename`
/// is the file's capability name), the signed `url` and the full `attachment`.
struct MultipartUploadController: Sendable {
    /// Longest a part's headers may run before the parser hands one over.
    static let maxPartHeaderBytes = 16 * 1024
    let files: any UploadStore
    let uploads: any UploadRepository
    let ingest: AttachmentIngest
    let policy: UploadPolicy
    let signer: URLSigner
    let maxBytes: Int

    /// The name the resumable front knows this endpoint by.
    static let resumableTarget = "upload-file"

    /// The largest body: the file and up to 64 KiB of multipart framing.
    var maxBodyBytes: Int64 { Int64(maxBytes) + 64 * 1024 }

    /// The route, behind `resumable`: the same request with the IETF draft's headers is stored
    /// resumably first, then answered here exactly as if it had come in one piece.
    func endpoints(resumable: ResumableUploadFront) -> RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post(use: resumable.creating(Self.resumableTarget, otherwise: upload))
        return routes
    }

    @Sendable func upload(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        guard let contentType = request.headers[.contentType], contentType.lowercased().hasPrefix("multipart/form-data"),
              let boundary = Self.boundary(in: contentType) else {
            throw APIError.unsupportedMediaType("send multipart/form-data with the file in the field \"file\"")
        }
        if !context.replaysResumableUpload { try policy.checkStart(userId: context.user.id) }
        // The file may be as large as the size limit or what is left of the quota, whichever is
        // less: refused before a byte is read when the client says how large the body is
        // (allowing 64 KiB for the multipart framing), cut off mid-stream otherwise.
        let tooLarge = APIError.tooLarge("uploads here are at most \(maxBytes) bytes")
        let declared = request.headers[.contentLength].flatMap(Int64.init)
        if let declared, declared > Int64(maxBytes) + 64 * 1024 { throw tooLarge }
        let room = try await policy.remaining(for: context.user.id, in: uploads) ?? .max
        let limit = min(Int64(maxBytes), room)
        let overLimit: any Error = room < Int64(maxBytes) ? policy.quotaExceeded : tooLarge
        if let declared, declared > limit + 64 * 1024 { throw overLimit }
        let id = TokenService.randomToken()
        try await files.create(id)
        let writer = try await files.openForAppend(id, at: 0, length: nil, state: nil, lease: nil)
        do {
            let part = PartCollector()
            let parser = MultipartParser(boundary: boundary)
            parser.onHeader = { name, value in part.header(name, value) }
            parser.onBody = { buffer in part.body(buffer) }
            parser.onPartComplete = { part.complete() }
            // The whole body, whatever its parts, is bounded like the file (a chunked body has no
            // Content-Length to refuse up front); a part's headers are bounded apart, since the
            // parser gathers a header line before it hands it over.
            var bodyBytes: Int64 = 0
            for try await chunk in request.body {
                bodyBytes += Int64(chunk.readableBytes)
                guard bodyBytes <= limit + 64 * 1024 else { throw overLimit }
                part.bytesWithoutProgress += chunk.readableBytes
                do { try parser.execute(chunk) } catch { throw APIError.badRequest("the multipart body is malformed") }
                guard part.bytesWithoutProgress <= Self.maxPartHeaderBytes else {
                    throw APIError.badRequest("a part's headers are over \(Self.maxPartHeaderBytes) bytes")
                }
                for piece in part.takeFileBytes() {
                    guard writer.end + Int64(piece.readableBytes) <= limit else { throw overLimit }
                    try await writer.append(piece)
                }
            }
            guard part.sawFile, part.fileComplete else { throw APIError.badRequest("no complete \"file\" field in the body") }
            try await writer.sync()
            Counter(label: "mediagate_upload_bytes_total", dimensions: [("protocol", "multipart")]).increment(by: Int(writer.offset))
            await writer.close()
            let file = try await ingest.storeFile(at: try await files.localPath(id, state: nil), filename: part.filename ?? "file",
                                                      ownerId: context.user.id, uploadId: nil)
            var attachment = file.attachment
            let url = signer.sign("/api/files/\(file.id)", fileId: file.id, variant: "original")
            attachment.url = url
            if attachment.thumbnailUrl != nil {
                attachment.thumbnailUrl = signer.sign("/api/files/\(file.id)/thumbnail", fileId: file.id, variant: "thumbnail")
            }
            var attachmentFields = try JSONDecoder().decode([String: JSONValue].self, from: JSONEncoder().encode(attachment))
            attachmentFields["mime_type"] = attachmentFields["mimeType"] ?? .null
            let mimeType = attachment.mimeType ?? "application/octet-stream"
            // The seed's keys (its app decodes `filename`, `file_url`, `file_size`, `mime_type`
            // and `message`; the article reads `filename` and loads /api/files/<filename>
            // with no header) and ours. 200, the only status both accept.
            let body: [String: JSONValue] = [
                "filename": .string(file.publicName ?? file.id), "file_url": .string(url),
                "file_size": .number(Double(file.size)), "mime_type": .string(mimeType),
                "message": .string("File uploaded successfully"),
                "url": .string(url), "file_id": .string(file.id), "attachment": .object(attachmentFields),
            ]
            return try TusController.json(body, status: .ok)
        } catch {
            await writer.close()
            try? await files.remove(id)
            throw error
        }
    }

    /// The `boundary` parameter of a multipart Content-Type.
    static func boundary(in contentType: String) -> String? {
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == "boundary" {
                let value = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                return value.isEmpty || value.count > 200 ? nil : value
            }
        }
        return nil
    }
}

/// Follows the parser's callbacks: which part is current, and the bytes of the `file` part.
/// Used from one request's task only, synchronously inside `execute`.
private final class PartCollector: @unchecked Sendable {
    private var headers: [String: String] = [:]
    private var inFile = false
    /// The file bytes parsed out of the current network read. MultipartKit hands the body over
    /// in pieces that end at every CR byte (one in 256 of random or compressed data), so they
    /// are gathered here and written once per read: a write per piece made this endpoint move
    /// ~33 MB/s.
    private var pending = ByteBuffer()
    /// Bytes fed to the parser since it last handed anything over (a header, body bytes, a
    /// part's end): what it is holding back, which is a header line being gathered.
    var bytesWithoutProgress = 0
    private(set) var sawFile = false
    private(set) var fileComplete = false
    private(set) var filename: String?

    func header(_ name: String, _ value: String) {
        bytesWithoutProgress = 0
        headers[name.lowercased()] = value
        if name.lowercased() == "content-disposition", Self.parameter("name", in: value) == "file", !sawFile {
            inFile = true
            sawFile = true
            filename = Self.parameter("filename", in: value)
        }
    }

    func body(_ buffer: ByteBuffer) {
        bytesWithoutProgress = 0
        guard inFile else { return }
        var buffer = buffer
        pending.writeBuffer(&buffer)
    }

    func complete() {
        bytesWithoutProgress = 0
        if inFile { fileComplete = true }
        inFile = false
        headers = [:]
    }

    /// The file bytes gathered since the last call (none: an empty list).
    func takeFileBytes() -> [ByteBuffer] {
        guard pending.readableBytes > 0 else { return [] }
        defer { pending = ByteBuffer() }
        return [pending]
    }

    static func parameter(_ key: String, in header: String) -> String? {
        for part in header.split(separator: ";") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == key {
                return pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }
        return nil
    }
}
