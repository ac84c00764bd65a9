import Crypto
import Foundation
import JWTKit
import MediagateCore
import MediagateWire

/// The claims of an access token.
struct AccessClaims: JWTPayload {
    var sub: SubjectClaim
    var name: String
    var exp: ExpirationClaim
    var iat: IssuedAtClaim
    /// "access": a refresh token is never a JWT, but a claim guards against confusing tokens.
    var typ: String
    /// The login (refresh-token family) the token belongs to: logging out or revoking it closes
    /// the sockets opened with it. Absent in tokens issued before it existed.
    var fam: String?

    func verify(using algorithm: some JWTAlgorithm) throws {
        try exp.verifyNotExpired()
        guard typ == "access" else { throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "not an access token") }
    }
}

/// An access token's claims, read again once a WebSocket upgrade has been granted on it: the
/// signature and type are checked again, the expiry was checked by the upgrade itself (which can
/// be seconds earlier on a busy server, and the socket outlives the token anyway).
struct UpgradedClaims: JWTPayload {
    var sub: SubjectClaim
    var typ: String
    var fam: String?

    func verify(using algorithm: some JWTAlgorithm) throws {
        guard typ == "access" else { throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "not an access token") }
    }
}

/// What a login or a refresh returns.
public struct IssuedTokens: Sendable {
    public var accessToken: String
    public var refreshToken: String
    public var expiresIn: Int
    package var user: User
}

/// What a valid access token says: who, and which login. (Its expiry matters only while it is
/// checked: sockets outlive their token.)
public struct AccessGrant: Sendable {
    package var user: User
    /// The refresh-token family, if the token names one.
    public var session: String?
}

/// Issues short-lived JWT access tokens and rotating opaque refresh tokens.
///
/// Refresh tokens are random 256-bit strings stored only as SHA-256 hashes. Each works once:
/// refreshing spends it and issues its successor in the same family. Presenting a spent token
/// again within `refreshGrace` seconds returns the same successor (clients such as the seed app
/// refresh several times at once with one token, as Okta's grace period and Auth0's reuse
/// interval allow); later, it means a copy exists somewhere, so the whole family (that login)
/// is revoked.
public struct TokenService: Sendable {
    let keys: JWTKeyCollection
    let users: any UserRepository
    let refreshTokens: any RefreshTokenRepository
    let accessLifetime: Int
    let refreshLifetime: Int
    let refreshGrace: TimeInterval
    /// Called with a family when it is revoked (logout, reuse), to close its sockets.
    let sessionEnded: @Sendable (String) async -> Void
    /// Revoked families whose access tokens have not all expired yet: such a token is refused
    /// at once instead of working out its 15 minutes.
    let endedSessions: EndedSessions

    /// Loads the HMAC signing key from `directory`, generating it (mode 0600) on first run.
    static func make(signingKeys: any SigningKeyRepository, users: any UserRepository, refreshTokens: any RefreshTokenRepository,
                     configuration: ChatConfiguration,
                     sessionEnded: @escaping @Sendable (String) async -> Void) async throws -> TokenService {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(key: SymmetricKey(data: try await signingKeys.key(named: "jwt-signing-key"))), digestAlgorithm: .sha256)
        // Logins ended before a restart, whose access tokens are still within their lifetime.
        let ended = EndedSessions(accessLifetime: .seconds(configuration.accessTokenSeconds))
        for family in try await refreshTokens.families(revokedSince: Date().addingTimeInterval(-TimeInterval(configuration.accessTokenSeconds))) {
            ended.end(family)
        }
        return TokenService(keys: keys, users: users, refreshTokens: refreshTokens,
                            accessLifetime: configuration.accessTokenSeconds, refreshLifetime: configuration.refreshTokenSeconds,
                            refreshGrace: TimeInterval(configuration.refreshReuseGraceSeconds), sessionEnded: sessionEnded,
                            endedSessions: ended)
    }

    /// A new login: a new refresh-token family.
    func issue(for user: User) async throws -> IssuedTokens {
        let refresh = Self.randomToken()
        let family = UUID().uuidString
        try await refreshTokens.insert(tokenHash: Self.hash(refresh), userId: user.id, family: family,
                                       expiresAt: Date().addingTimeInterval(TimeInterval(refreshLifetime)))
        return IssuedTokens(accessToken: try await accessToken(for: user, session: family), refreshToken: refresh,
                            expiresIn: accessLifetime, user: user)
    }

    /// Spends `refreshToken` and returns its successor with a fresh access token.
    func refresh(_ refreshToken: String) async throws -> IssuedTokens {
        let next = Self.randomToken()
        let key = Self.successorKey(for: refreshToken)
        let sealed = try AES.GCM.seal(Data(next.utf8), using: key).combined ?? Data()
        let outcome = try await refreshTokens.rotate(
            tokenHash: Self.hash(refreshToken), newTokenHash: Self.hash(next), sealedSuccessor: sealed,
            newExpiresAt: Date().addingTimeInterval(TimeInterval(refreshLifetime)), grace: refreshGrace, now: Date())
        let userId: Int64, family: String, successor: String
        switch outcome {
        case .rotated(let id, let rotatedFamily):
            (userId, family, successor) = (id, rotatedFamily, next)
        case .replayed(let id, let replayedFamily, let sealedSuccessor):
            guard let box = try? AES.GCM.SealedBox(combined: sealedSuccessor),
                  let opened = try? AES.GCM.open(box, using: key) else {
                throw APIError.unauthorized("unknown refresh token")
            }
            (userId, family, successor) = (id, replayedFamily, String(decoding: opened, as: UTF8.self))
        case .unknown: throw APIError.unauthorized("unknown refresh token")
        case .expired: throw APIError.unauthorized("the refresh token has expired; log in again")
        case .revoked: throw APIError.unauthorized("the refresh token was revoked; log in again")
        case .reused(let revokedFamily):
            endedSessions.end(revokedFamily)
            await sessionEnded(revokedFamily)
            throw APIError.unauthorized("this refresh token was already used; every session of this login is now revoked")
        }
        guard let user = try await users.user(id: userId) else { throw APIError.unauthorized("the account no longer exists") }
        return IssuedTokens(accessToken: try await accessToken(for: user, session: family), refreshToken: successor,
                            expiresIn: accessLifetime, user: user)
    }

    /// Logs out: revokes the login `refreshToken` belongs to, or else the one the access token
    /// names, and closes its sockets.
    func logout(refreshToken: String?, user: User, session: String?) async throws {
        var family = session
        if let refreshToken, let revoked = try await refreshTokens.revokeFamily(of: Self.hash(refreshToken), userId: user.id, now: Date()) {
            family = revoked
        } else if let session {
            try await refreshTokens.revoke(family: session, userId: user.id, now: Date())
        }
        if let family {
            endedSessions.end(family)
            await sessionEnded(family)
        }
    }

    /// What an access token grants, if its signature, type and expiry hold.
    func verify(accessToken: String) async throws -> AccessGrant {
        let claims: AccessClaims
        do {
            claims = try await keys.verify(accessToken, as: AccessClaims.self)
        } catch {
            throw APIError.unauthorized("invalid or expired access token")
        }
        if let family = claims.fam, endedSessions.contains(family) {
            throw APIError.unauthorized("this login has ended; log in again")
        }
        guard let id = Int64(claims.sub.value), let user = try await users.user(id: id) else {
            throw APIError.unauthorized("the account no longer exists")
        }
        return AccessGrant(user: user, session: claims.fam)
    }

    /// The grant of a token a WebSocket upgrade was just granted on (see ``UpgradedClaims``).
    func verify(upgradedWith accessToken: String) async throws -> AccessGrant {
        guard let claims = try? await keys.verify(accessToken, as: UpgradedClaims.self), let id = Int64(claims.sub.value),
              let user = try await users.user(id: id) else {
            throw APIError.unauthorized("invalid access token")
        }
        return AccessGrant(user: user, session: claims.fam)
    }

    func accessToken(for user: User, session: String?) async throws -> String {
        let now = Date()
        let claims = AccessClaims(sub: .init(value: String(user.id)), name: user.username,
                                  exp: .init(value: now.addingTimeInterval(TimeInterval(accessLifetime))),
                                  iat: .init(value: now), typ: "access", fam: session)
        return try await keys.sign(claims)
    }

    /// The key that seals a refresh token's successor: derived from the spent token itself,
    /// so the database alone never yields a usable token.
    static func successorKey(for refreshToken: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: Data(refreshToken.utf8)),
                               info: Data("mediagate refresh successor".utf8), outputByteCount: 32)
    }

    static func randomToken() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64URLEncodedString()
    }

    static func hash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
