import Foundation
import Metrics
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import MediagateCore
import MediagateWire

/// Answers `GET /api/files/{id}/thumbnail?…&exp=…&sig=…` on the event loop, before the router,
/// when the signature is valid and both the file's record and the thumbnail are in memory.
///
/// A chat room's thumbnails are fetched by every member's client, through the signed URLs the
/// attachments carry, so nearly all of them are such hits. Answering them here skips the hops
/// into Swift Concurrency and the router that every other request takes: on 2 cores shared
/// with `wrk` a cached thumbnail went from ~14,600 to ~20,900 requests/s (with the signature
/// check cached in ``URLSigner``; Docs/BENCHMARKS.md).
///
/// It decides with the same code as ``FileController/thumbnail(_:context:)`` (the query
/// parsing, ``URLSigner``, the header set) and answers only `200`. Anything else, whether a
/// miss, a Bearer token, a bad or expired signature, `If-None-Match`, `Connection: close`, or a
/// request while an earlier one on the connection is still being answered, goes on to the
/// router unchanged, which gives the full answer (and every error) as before.
final class CachedThumbnailHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let files: FileStore
    private let thumbnails: Thumbnails
    private let signer: URLSigner
    private let logger: Logger
    /// Requests passed on whose response has not ended yet: answering a later one before
    /// them would put the responses out of order.
    private var passedOn = 0
    /// Set while the rest of a request answered here (its end) is still to arrive.
    private var swallowing = false
    private var date = HTTPDateText()

    init(files: FileStore, thumbnails: Thumbnails, signer: URLSigner, logger: Logger) {
        self.files = files
        self.thumbnails = thumbnails
        self.signer = signer
        self.logger = logger
    }

    /// Thumbnails answered here (`mediagate_cached_thumbnails_total`).
    private let answered = Counter(label: "mediagate_cached_thumbnails_total")

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if swallowing {
            if case .end = part { swallowing = false }
            return
        }
        if case .head(let request) = part {
            if passedOn == 0, let answer = cachedAnswer(to: request) {
                logger.info("Request", metadata: ["hb.request.method": "\(request.method)", "hb.request.path": "\(request.path ?? "")"])
                swallowing = true
                context.write(wrapOutboundOut(.head(answer.head)), promise: nil)
                context.write(wrapOutboundOut(.body(answer.body)), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                answered.increment() // the router's metrics never see these
                return
            }
            passedOn += 1
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), passedOn > 0 { passedOn -= 1 }
        context.write(data, promise: promise)
    }

    /// The response for a hit, or nil to let the router answer.
    private func cachedAnswer(to request: HTTPRequest) -> (head: HTTPResponse, body: ByteBuffer)? {
        guard request.method == .get, let target = request.path, target.hasPrefix(Self.prefix),
              request.headerFields[.ifNoneMatch] == nil,
              request.headerFields[.connection].map({ $0.lowercased() != "close" }) ?? true else { return nil }
        let uri = URI(target)
        let components = uri.path.dropFirst(Self.prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard components.count == 2, components[1] == "thumbnail" else { return nil }
        let query = uri.queryParameters
        let fileId = String(components[0])
        guard let expiry = query["exp"], let signature = query["sig"],
              signer.verify(fileId: fileId, variant: "thumbnail", expiry: String(expiry), signature: String(signature)) == .valid,
              let file = files.recent[fileId],
              let asked = try? FileController.thumbnailRequest(query: query, accept: request.headerFields[.accept]),
              let thumbnail = thumbnails.inMemory(sha256: file.sha256, asked.request) else { return nil }
        var headers = FileController.thumbnailHeaders(format: asked.request.format, name: thumbnail.name,
                                                      variesByAccept: asked.variesByAccept)
        headers[.contentLength] = String(thumbnail.bytes.readableBytes)
        headers[.date] = date.now()
        headers[.server] = "mediagate"
        return (HTTPResponse(status: .ok, headerFields: headers), thumbnail.bytes)
    }

    private static let prefix = "/api/files/"
}
