import Hummingbird

/// Authenticates `Authorization: Bearer <access token>` (or `?token=`, which WebSocket clients
/// such as the seed's use since they cannot set headers). A missing, forged or expired token is
/// a 401 here, before any handler runs.
struct AccessTokenMiddleware: RouterMiddleware {
    typealias Context = ChatRequestContext
    let tokens: TokenService

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token = Self.token(in: request) else { throw APIError.unauthorized("an access token is required") }
        var context = context
        let grant = try await tokens.verify(accessToken: token)
        context.identity = grant.user
        context.session = grant.session
        return try await next(request, context)
    }

    static func token(in request: Request) -> String? {
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]) }
        }
        return request.uri.queryParameters["token"].map(String.init)
    }
}
