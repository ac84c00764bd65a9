import Hummingbird
import MediagateCore
import MediagateWire

/// Authenticates `Authorization: Bearer <access token>`. A missing, forged or expired token is
/// a 401 here, before any handler runs. A `?token=` is not read on REST routes: URLs end up in
/// proxy logs, browser history and `Referer` headers; only the WebSocket upgrade, which
/// browsers and the seed's client cannot give a header, takes one.
struct AccessTokenMiddleware: RouterMiddleware {
    typealias Context = ChatRequestContext
    let tokens: TokenService

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token = Self.bearerToken(in: request) else { throw APIError.unauthorized("an access token is required") }
        var context = context
        let grant = try await tokens.verify(accessToken: token)
        context.identity = grant.user
        context.session = grant.session
        return try await next(request, context)
    }

    static func bearerToken(in request: Request) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        return parts.count == 2 && parts[0].lowercased() == "bearer" ? String(parts[1]) : nil
    }

    /// The header's token, else `?token=`: for the WebSocket upgrade only.
    static func upgradeToken(in request: Request) -> String? {
        bearerToken(in: request) ?? request.uri.queryParameters["token"].map(String.init)
    }
}
