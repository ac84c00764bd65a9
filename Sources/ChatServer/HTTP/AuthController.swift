import Foundation
import Hummingbird
import MediagateCore
import MediagateWire

/// `/api/auth`: register (and the seed app's `signup`), login, refresh (public); logout and
/// `me` (authenticated).
struct AuthController: Sendable {
    let users: any UserRepository
    let tokens: TokenService
    let passwords: Passwords
    let throttle: LoginThrottle
    let allowRegistration: Bool
    /// Accounts created per client address: each costs a bcrypt hash and a row.
    let registrations: RateLimiter

    /// Routes that need no access token.
    var publicEndpoints: RouteCollection<ChatRequestContext> {
        let routes = RouteCollection(context: ChatRequestContext.self)
        routes.post("register", use: register)
        routes.post("signup", use: signup)
        routes.post("login", use: login)
        routes.post("refresh", use: refresh)
        return routes
    }

    var authenticatedEndpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("logout", use: logout)
        routes.get("me", use: me)
        return routes
    }

    @Sendable func register(_ request: Request, context: ChatRequestContext) async throws -> EditedResponse<TokenResponse> {
        EditedResponse(status: .created, response: try await createAccount(request, context: context))
    }

    /// The seed app's name for `register`, answering 200: that app reads anything else as a failure.
    @Sendable func signup(_ request: Request, context: ChatRequestContext) async throws -> TokenResponse {
        try await createAccount(request, context: context)
    }

    private func createAccount(_ request: Request, context: ChatRequestContext) async throws -> TokenResponse {
        guard allowRegistration else { throw APIError.forbidden("registration is turned off on this server") }
        try registrations.check(context.remoteAddress, "accounts created from this address")
        let body = try await request.decode(as: CredentialsBody.self, context: context)
        try Passwords.validate(username: body.username, password: body.password)
        let hash = try await passwords.hash(body.password)
        guard let user = try await users.create(username: body.username, passwordHash: hash) else {
            throw APIError.conflict("the user name is taken")
        }
        context.logger.info("registered", metadata: ["user": "\(user.username)"])
        return TokenResponse(try await tokens.issue(for: user))
    }

    @Sendable func login(_ request: Request, context: ChatRequestContext) async throws -> TokenResponse {
        let body = try await request.decode(as: CredentialsBody.self, context: context)
        let admission = await throttle.admission(username: body.username, address: context.remoteAddress)
        if let wait = admission.retryAfter {
            throw APIError.tooManyRequests(retryAfter: wait)
        }
        // Unknown users cost a hash too, so timing does not tell which names exist.
        let stored = try await users.credentials(username: body.username)
        let matches = try await passwords.verify(body.password, against: stored?.1 ?? passwords.decoyHash,
                                                 knownDevice: admission.knownDevice)
        guard let (user, _) = stored, matches else {
            await throttle.recordFailure(username: body.username, address: context.remoteAddress)
            throw APIError.unauthorized("wrong user name or password")
        }
        await throttle.recordSuccess(username: body.username, address: context.remoteAddress)
        return TokenResponse(try await tokens.issue(for: user))
    }

    @Sendable func refresh(_ request: Request, context: ChatRequestContext) async throws -> TokenResponse {
        let body = try await request.decode(as: RefreshBody.self, context: context)
        return TokenResponse(try await tokens.refresh(body.refresh_token))
    }

    /// Ends a login: the one `refresh_token` belongs to, else the access token's own; its
    /// sockets close at once, and its access tokens stop working at once.
    @Sendable func logout(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        let body = try? await request.decode(as: LogoutBody.self, context: context)
        try await tokens.logout(refreshToken: body?.refresh_token, user: context.user, session: context.session)
        return Response(status: .noContent)
    }

    @Sendable func me(_ request: Request, context: AuthenticatedContext) async throws -> UserJSON {
        UserJSON(context.user)
    }
}
