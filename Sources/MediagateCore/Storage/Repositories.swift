import Foundation
import MediagateWire

/// Accounts.
package protocol UserRepository: Sendable {
    /// Creates an account; `nil` when the name is taken (names compare case-insensitively).
    func create(username: String, passwordHash: String) async throws -> User?
    /// The account and its password hash. The name must match exactly, case included: the
    /// seed app keeps the name as typed and tells its own messages by it.
    func credentials(username: String) async throws -> (User, String)?
    func user(id: Int64) async throws -> User?
    func user(username: String) async throws -> User?
}

/// Refresh tokens, stored hashed, grouped in families (one per login).
package protocol RefreshTokenRepository: Sendable {
    func insert(tokenHash: String, userId: Int64, family: String, expiresAt: Date) async throws
    /// Spends a token and issues its successor in one transaction. `sealedSuccessor` (the
    /// successor sealed with a key only the spent token derives) is kept with the spent token:
    /// presented again within `grace`, the token gets `.replayed` with it instead of revoking.
    func rotate(tokenHash: String, newTokenHash: String, sealedSuccessor: Data, newExpiresAt: Date, grace: TimeInterval,
                now: Date) async throws -> RotationOutcome
    /// Revokes the family `tokenHash` belongs to, if it belongs to `userId`. Returns the family.
    func revokeFamily(of tokenHash: String, userId: Int64, now: Date) async throws -> String?
    /// Revokes one family (a logout naming only its access token).
    func revoke(family: String, userId: Int64, now: Date) async throws
    /// Families revoked since `date`: their access tokens may still be unexpired.
    func families(revokedSince date: Date) async throws -> [String]
}

package enum RotationOutcome: Sendable, Equatable {
    case rotated(userId: Int64, family: String)
    /// The token was spent moments ago (within the grace window): here is the successor it
    /// got then, still sealed. Clients that refresh in parallel all end up on one chain.
    case replayed(userId: Int64, family: String, sealedSuccessor: Data)
    case unknown
    case expired
    case revoked
    /// A spent token came back after the grace window: someone holds a copy. The whole
    /// family is now revoked.
    case reused(family: String)
}

/// Rooms and their members.
package protocol RoomRepository: Sendable {
    func create(name: String, isPrivate: Bool, creator: Int64, members: [Int64]) async throws -> Room
    func room(id: Int64) async throws -> Room?
    func isMember(roomId: Int64, userId: Int64) async throws -> Bool
    /// Adds the member; returns false when they already were one.
    func addMember(roomId: Int64, userId: Int64) async throws -> Bool
    func removeMember(roomId: Int64, userId: Int64) async throws -> Bool
    func members(roomId: Int64) async throws -> [User]
    /// The rooms the user is in, then the public rooms they are not in (with no unread count),
    /// newest activity first.
    func summaries(userId: Int64) async throws -> [RoomSummary]
    /// Moves the member's read marker forward (never back). Returns the marker after the move.
    func markRead(roomId: Int64, userId: Int64, messageId: Int64) async throws -> Int64
    /// Moves the member's read marker to the room's newest message; returns how many messages
    /// that marked read and the newest message's id.
    func markAllRead(roomId: Int64, userId: Int64) async throws -> (count: Int, newest: Int64?)
}

/// Chat history.
package protocol MessageRepository: Sendable {
    /// Stores a message, or returns the one already stored under the sender's `clientId`.
    func insert(roomId: Int64, sender: User, content: String, clientId: String?, attachment: Attachment?, fileId: String?,
                now: Date) async throws -> (StoredMessage, isNew: Bool)
    /// Messages older than `before` (newest first), at most `limit`.
    func history(roomId: Int64, before: Int64?, limit: Int) async throws -> [StoredMessage]
    func message(id: Int64) async throws -> StoredMessage?
}

/// Reactions: one per user and message.
package protocol ReactionRepository: Sendable {
    /// Sets the user's reaction on a message, replacing any other; returns it and whether
    /// anything changed.
    func set(messageId: Int64, userId: Int64, type: String, now: Date) async throws -> (StoredReaction, changed: Bool)
    /// Removes the user's reaction; returns the one removed.
    func remove(messageId: Int64, userId: Int64) async throws -> StoredReaction?
    /// Each message's reactions, grouped by type in the order the types were first used.
    func summaries(messageIds: [Int64]) async throws -> [Int64: [ReactionGroup]]
}

/// Upload state, stored so that a restarted server (or another node) resumes where the store says.
package protocol UploadRepository: Sendable {
    /// Stores a new upload if its declared length fits what `quota` leaves its user and the
    /// user has fewer than `maxOpen` unfinished uploads, both counted in the same transaction:
    /// parallel creations cannot all pass one check and overrun together. nil: no such limit.
    func create(_ record: UploadRecord, quota: Int64?, maxOpen: Int?) async throws -> UploadCreation
    func upload(id: String) async throws -> UploadRecord?
    /// Records that the bytes up to `offset` are durable, and the length if it was deferred.
    /// An upload that completes gets its processing job in the same transaction, so a crash
    /// between the two cannot leave a completed upload nobody processes.
    /// …only while `fence` is still the upload's writer fence (nil: whoever writes); returns
    /// whether it did. A writer that another node took the upload from can never store an offset.
    /// `storeState`, when given, replaces the record's (``UploadRecord/storeState``).
    func advance(id: String, to offset: Int64, length: Int64?, completedAt: Date?, processing: ProcessingJob?,
                 storeState: String?, ifWriter fence: Int64?) async throws -> Bool
    /// Makes a new writer of the upload: returns its fence, one more than any before (nil: no
    /// such upload). Every earlier writer's ``advance(id:to:length:completedAt:processing:storeState:ifWriter:)`` fails from then on.
    func takeWriter(id: String) async throws -> Int64?
    /// The fence of the upload's latest writer.
    func writerFence(id: String) async throws -> Int64?
    func delete(id: String) async throws
    /// Unfinished uploads whose expiry has passed.
    func expired(at now: Date) async throws -> [String]
    func setFile(uploadId: String, fileId: String) async throws
    /// Marks a completed upload as refused (by policy, or as `corrupt` after its processing
    /// failed too often); its bytes are gone.
    func reject(uploadId: String, code: String) async throws
    /// Bytes `userId` holds against their quota: stored files, plus the declared (or, when
    /// deferred, received) lengths of uploads not yet stored that have not expired.
    func bytesInUse(userId: Int64, at now: Date) async throws -> Int64
}

/// Stored files' rows. A row never changes once written.
package protocol FileRepository: Sendable {
    func insert(_ file: StoredFile, createdAt: Date) async throws
    func file(id: String) async throws -> StoredFile?
    /// The file with this capability name (`<random>.<ext>`).
    func file(publicName: String) async throws -> StoredFile?
    /// Whether `userId` uploaded the file or is in a room where a message carries it.
    func canRead(fileId: String, userId: Int64) async throws -> Bool
    /// Every content hash a file row names (blobs outside this set are orphans).
    func allSHA256() async throws -> Set<String>
}

/// The keys tokens and URLs are signed with. Every node that must accept the others' tokens
/// and signed URLs reads them from the same place: the shared database, or, for one node, its
/// data directory.
package protocol SigningKeyRepository: Sendable {
    /// The key named `name`, made (512 random bits) on first use; every caller gets the same one.
    func key(named name: String) async throws -> Data
    /// The key named `name` if an operator put it there (`…previous`, a rotated-out key).
    func existingKey(named name: String) async throws -> Data?
}

extension SigningKeyRepository {
    package static func newKey() -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<64).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }
}

extension UploadRepository {
    /// Stores the offset whoever writes (one process that serialises its writers itself).
    package func advance(id: String, to offset: Int64, length: Int64?, completedAt: Date?, processing: ProcessingJob?) async throws {
        _ = try await advance(id: id, to: offset, length: length, completedAt: completedAt, processing: processing,
                              storeState: nil, ifWriter: nil)
    }
}
