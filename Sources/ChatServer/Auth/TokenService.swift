import Crypto
import Foundation
import JWTKit

/// The claims of an access token.
struct AccessClaims: JWTPayload {
    var sub: SubjectClaim
    var name: String
    var exp: ExpirationClaim
    var iat: IssuedAtClaim
    /// "access": a refresh token is never a JWT, but a claim guards against confusing tokens.
    var typ: String

    func verify(using algorithm: some JWTAlgorithm) throws {
        try exp.verifyNotExpired()
        guard typ == "access" else { throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "not an access token") }
    }
}

/// What a login or a refresh returns.
public struct IssuedTokens: Sendable {
    public var accessToken: String
    public var refreshToken: String
    public var expiresIn: Int
    public var user: User
}

/// Issues short-lived JWT access tokens and rotating opaque refresh tokens.
///
/// Refresh tokens are random 256-bit strings stored only as SHA-256 hashes. Each works once:
/// refreshing spends it and issues its successor in the same family. Presenting a spent token
/// again means a copy exists somewhere, so the whole family (that login) is revoked.
public struct TokenService: Sendable {
    let keys: JWTKeyCollection
    let users: any UserRepository
    let refreshTokens: any RefreshTokenRepository
    let accessLifetime: Int
    let refreshLifetime: Int

    /// Loads the HMAC signing key from `directory`, generating it (mode 0600) on first run.
    static func make(directory: String, users: any UserRepository, refreshTokens: any RefreshTokenRepository,
                     configuration: ChatConfiguration) async throws -> TokenService {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(key: SymmetricKey(data: try signingKey(in: directory))), digestAlgorithm: .sha256)
        return TokenService(keys: keys, users: users, refreshTokens: refreshTokens,
                            accessLifetime: configuration.accessTokenSeconds, refreshLifetime: configuration.refreshTokenSeconds)
    }

    static func signingKey(in directory: String, name: String = "jwt-signing-key") throws -> Data {
        let path = (directory as NSString).appendingPathComponent(name)
        if let existing = FileManager.default.contents(atPath: path), existing.count >= 32 {
            return existing
        }
        let key = SymmetricKey(size: SymmetricKeySize(bitCount: 512)).withUnsafeBytes { Data($0) }
        guard FileManager.default.createFile(atPath: path, contents: key, attributes: [.posixPermissions: 0o600]) else {
            throw ConfigurationError(message: "cannot write the signing key to \(path)")
        }
        return key
    }

    /// A new login: a new refresh-token family.
    func issue(for user: User) async throws -> IssuedTokens {
        let refresh = Self.randomToken()
        try await refreshTokens.insert(tokenHash: Self.hash(refresh), userId: user.id, family: UUID().uuidString,
                                       expiresAt: Date().addingTimeInterval(TimeInterval(refreshLifetime)))
        return IssuedTokens(accessToken: try await accessToken(for: user), refreshToken: refresh, expiresIn: accessLifetime, user: user)
    }

    /// Spends `refreshToken` and returns its successor with a fresh access token.
    func refresh(_ refreshToken: String) async throws -> IssuedTokens {
        let next = Self.randomToken()
        let outcome = try await refreshTokens.rotate(
            tokenHash: Self.hash(refreshToken), newTokenHash: Self.hash(next),
            newExpiresAt: Date().addingTimeInterval(TimeInterval(refreshLifetime)), now: Date())
        switch outcome {
        case .rotated(let userId):
            guard let user = try await users.user(id: userId) else { throw APIError.unauthorized("the account no longer exists") }
            return IssuedTokens(accessToken: try await accessToken(for: user), refreshToken: next, expiresIn: accessLifetime, user: user)
        case .unknown: throw APIError.unauthorized("unknown refresh token")
        case .expired: throw APIError.unauthorized("the refresh token has expired; log in again")
        case .revoked: throw APIError.unauthorized("the refresh token was revoked; log in again")
        case .reused:
            throw APIError.unauthorized("this refresh token was already used; every session of this login is now revoked")
        }
    }

    func revoke(_ refreshToken: String, of user: User) async throws -> Bool {
        try await refreshTokens.revokeFamily(of: Self.hash(refreshToken), userId: user.id, now: Date())
    }

    /// The user an access token names, if its signature, type and expiry hold.
    func verify(accessToken: String) async throws -> (User, expiresAt: Date) {
        let claims: AccessClaims
        do {
            claims = try await keys.verify(accessToken, as: AccessClaims.self)
        } catch {
            throw APIError.unauthorized("invalid or expired access token")
        }
        guard let id = Int64(claims.sub.value), let user = try await users.user(id: id) else {
            throw APIError.unauthorized("the account no longer exists")
        }
        return (user, claims.exp.value)
    }

    func accessToken(for user: User) async throws -> String {
        let now = Date()
        let claims = AccessClaims(sub: .init(value: String(user.id)), name: user.username,
                                  exp: .init(value: now.addingTimeInterval(TimeInterval(accessLifetime))),
                                  iat: .init(value: now), typ: "access")
        return try await keys.sign(claims)
    }

    static func randomToken() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64URLEncodedString()
    }

    static func hash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
