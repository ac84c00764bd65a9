import Foundation
import Hummingbird

/// `/api/auth`: register, login, refresh (public) and logout (authenticated).
struct AuthController: Sendable {
    let users: any UserRepository
    let tokens: TokenService
    let passwords: Passwords
    let throttle: LoginThrottle
    let allowRegistration: Bool

    /// Routes that need no access token.
    var publicEndpoints: RouteCollection<ChatRequestContext> {
        let routes = RouteCollection(context: ChatRequestContext.self)
        routes.post("register", use: register)
        routes.post("login", use: login)
        routes.post("refresh", use: refresh)
        return routes
    }

    var authenticatedEndpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("logout", use: logout)
        return routes
    }

    @Sendable func register(_ request: Request, context: ChatRequestContext) async throws -> EditedResponse<TokenResponse> {
        guard allowRegistration else { throw APIError.forbidden("registration is turned off on this server") }
        let body = try await request.decode(as: CredentialsBody.self, context: context)
        try Passwords.validate(username: body.username, password: body.password)
        let hash = try await passwords.hash(body.password)
        guard let user = try await users.create(username: body.username, passwordHash: hash) else {
            throw APIError.conflict("the user name is taken")
        }
        context.logger.info("registered", metadata: ["user": "\(user.username)"])
        return EditedResponse(status: .created, response: TokenResponse(try await tokens.issue(for: user)))
    }

    @Sendable func login(_ request: Request, context: ChatRequestContext) async throws -> TokenResponse {
        let body = try await request.decode(as: CredentialsBody.self, context: context)
        if let wait = await throttle.retryAfter(username: body.username, address: context.remoteAddress) {
            throw APIError.tooManyRequests(retryAfter: wait)
        }
        // Unknown users cost a hash too, so timing does not tell which names exist.
        let stored = try await users.credentials(username: body.username)
        let matches = try await passwords.verify(body.password, against: stored?.1 ?? Self.decoyHash)
        guard let (user, _) = stored, matches else {
            await throttle.recordFailure(username: body.username, address: context.remoteAddress)
            throw APIError.unauthorized("wrong user name or password")
        }
        await throttle.recordSuccess(username: body.username)
        return TokenResponse(try await tokens.issue(for: user))
    }

    @Sendable func refresh(_ request: Request, context: ChatRequestContext) async throws -> TokenResponse {
        let body = try await request.decode(as: RefreshBody.self, context: context)
        return TokenResponse(try await tokens.refresh(body.refresh_token))
    }

    @Sendable func logout(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        // No body is fine: the access token simply runs out. With one, that login is revoked.
        let body = try? await request.decode(as: LogoutBody.self, context: context)
        if let token = body?.refresh_token {
            _ = try await tokens.revoke(token, of: context.user)
        }
        return Response(status: .noContent)
    }

    /// A bcrypt hash of nothing anyone knows, verified against when the user does not exist.
    private static let decoyHash = "$2b$12$C6UzMDM.H6dfI/f/IKcEeO5k4h5d3Vq7rEq5c2R1mZrC8xQk7yWQe"
}
