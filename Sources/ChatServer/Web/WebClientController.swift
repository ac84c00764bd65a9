import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The web chat client at `/`: an HTML page and its JavaScript modules and stylesheet under
/// `/app/`, embedded in the binary (``WebAssets``, made from `WebClient/`).
///
/// Every answer carries a Content-Security-Policy that allows scripts, styles and connections
/// from this origin only (no inline script, no `eval`, no other host), and an `ETag`: the
/// browser revalidates (`no-cache`) and gets 304 while the binary is the same.
struct WebClientController: Sendable {
    struct Asset: Sendable {
        let type: String
        let body: ByteBuffer
        let etag: String
    }

    /// By file name.
    let assets: [String: Asset]

    static let contentSecurityPolicy = [
        "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob:", "media-src 'self' blob:",
        "connect-src 'self'", "manifest-src 'self'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
    ].joined(separator: "; ")

    init(files: [String: (type: String, text: String)] = WebAssets.files) {
        var assets: [String: Asset] = [:]
        for (name, file) in files {
            let digest = SHA256.hash(data: Data(file.text.utf8)).prefix(12).map { String(format: "%02x", $0) }.joined()
            assets[name] = Asset(type: file.type, body: ByteBuffer(string: file.text), etag: "\"\(digest)\"")
        }
        self.assets = assets
    }

    func addRoutes(to router: Router<ChatRequestContext>) {
        router.get("/") { request, _ in try answer("index.html", request) }
        router.get("/app/:asset") { request, context in
            try answer(context.parameters.get("asset") ?? "", request)
        }
    }

    private func answer(_ name: String, _ request: Request) throws -> Response {
        guard name != "index.html" || request.uri.path == "/", let asset = assets[name] else {
            throw APIError.notFound("no such file")
        }
        var headers: HTTPFields = [
            .contentType: asset.type, .eTag: asset.etag, .cacheControl: "no-cache",
            .contentSecurityPolicy: Self.contentSecurityPolicy, .xContentTypeOptions: "nosniff",
            .referrerPolicy: "no-referrer",
        ]
        if request.headers[.ifNoneMatch]?.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == asset.etag }) == true {
            headers[.contentType] = nil
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: asset.body))
    }
}

extension HTTPField.Name {
    static let referrerPolicy = Self("Referrer-Policy")!
}
