import Foundation

/// Accounts.
public protocol UserRepository: Sendable {
    /// Creates an account; `nil` when the name is taken (names compare case-insensitively).
    func create(username: String, passwordHash: String) async throws -> User?
    /// The account and its password hash.
    func credentials(username: String) async throws -> (User, String)?
    func user(id: Int64) async throws -> User?
    func user(username: String) async throws -> User?
}

/// Refresh tokens, stored hashed, grouped in families (one per login).
public protocol RefreshTokenRepository: Sendable {
    func insert(tokenHash: String, userId: Int64, family: String, expiresAt: Date) async throws
    /// Spends a token and issues its successor in one transaction.
    func rotate(tokenHash: String, newTokenHash: String, newExpiresAt: Date, now: Date) async throws -> RotationOutcome
    /// Revokes the family `tokenHash` belongs to, if it belongs to `userId`. Returns whether it did.
    func revokeFamily(of tokenHash: String, userId: Int64, now: Date) async throws -> Bool
}

public enum RotationOutcome: Sendable, Equatable {
    case rotated(userId: Int64)
    case unknown
    case expired
    case revoked
    /// A spent token came back: someone holds a copy. The whole family is now revoked.
    case reused
}

/// Rooms and their members.
public protocol RoomRepository: Sendable {
    func create(name: String, isPrivate: Bool, creator: Int64, members: [Int64]) async throws -> Room
    func room(id: Int64) async throws -> Room?
    func isMember(roomId: Int64, userId: Int64) async throws -> Bool
    /// Adds the member; returns false when they already were one.
    func addMember(roomId: Int64, userId: Int64) async throws -> Bool
    func removeMember(roomId: Int64, userId: Int64) async throws -> Bool
    func members(roomId: Int64) async throws -> [User]
    func summaries(userId: Int64) async throws -> [RoomSummary]
    /// Moves the member's read marker forward (never back). Returns the marker after the move.
    func markRead(roomId: Int64, userId: Int64, messageId: Int64) async throws -> Int64
}

/// Chat history.
public protocol MessageRepository: Sendable {
    /// Stores a message, or returns the one already stored under the sender's `clientId`.
    func insert(roomId: Int64, sender: User, content: String, clientId: String?, attachmentJSON: String?, fileId: String?,
                now: Date) async throws -> (StoredMessage, isNew: Bool)
    /// Messages older than `before` (newest first), at most `limit`.
    func history(roomId: Int64, before: Int64?, limit: Int) async throws -> [StoredMessage]
    func message(id: Int64) async throws -> StoredMessage?
}
