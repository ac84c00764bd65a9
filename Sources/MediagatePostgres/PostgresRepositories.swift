import Foundation
import Logging
import MediagateCore
import MediagateWire
import PostgresNIO

// The PostgreSQL implementations of MediagateCore's repositories. Each mirrors its SQLite twin;
// where SQLite serialises every write transaction, these take row locks (`FOR UPDATE`) so that
// checks and writes racing from several nodes still see one order.

/// Seconds since 1970, as every time column stores them.
private extension Date {
    var seconds: Double { timeIntervalSince1970 }
    init(seconds: Double) { self.init(timeIntervalSince1970: seconds) }
}

private extension PostgresRowSequence {
    /// All rows.
    func all() async throws -> [PostgresRow] { try await collect() }
}

/// PostgreSQL's `unique_violation`.
private func isUniqueViolation(_ error: any Error) -> Bool {
    (error as? PSQLError)?.serverInfo?[.sqlState] == "23505"
}

private let attachmentEncoder = JSONEncoder()
private let attachmentDecoder = JSONDecoder()

private func encode(_ attachment: Attachment?) throws -> String? {
    try attachment.map { String(decoding: try attachmentEncoder.encode($0), as: UTF8.self) }
}

private func decodeAttachment(_ text: String?) throws -> Attachment? {
    try text.map { try attachmentDecoder.decode(Attachment.self, from: Data($0.utf8)) }
}

package struct PostgresUserRepository: UserRepository {
    let db: PostgresDatabase
    package init(_ db: PostgresDatabase) { self.db = db }

    package func create(username: String, passwordHash: String) async throws -> User? {
        do {
            let rows = try await db.client.query("""
                INSERT INTO users (username, password_hash, created_at) VALUES (\(username), \(passwordHash), \(Date().seconds)) RETURNING id
                """, logger: db.logger)
            for try await id in rows.decode(Int64.self) { return User(id: id, username: username) }
            return nil
        } catch where isUniqueViolation(error) {
            return nil
        }
    }

    package func credentials(username: String) async throws -> (User, String)? {
        let rows = try await db.client.query("SELECT id, username, password_hash FROM users WHERE username = \(username)", logger: db.logger)
        for try await (id, name, hash) in rows.decode((Int64, String, String).self) { return (User(id: id, username: name), hash) }
        return nil
    }

    package func user(id: Int64) async throws -> User? {
        let rows = try await db.client.query("SELECT id, username FROM users WHERE id = \(id)", logger: db.logger)
        for try await (id, name) in rows.decode((Int64, String).self) { return User(id: id, username: name) }
        return nil
    }

    /// Ignoring case, as names are unique.
    package func user(username: String) async throws -> User? {
        let rows = try await db.client.query("SELECT id, username FROM users WHERE lower(username) = lower(\(username))", logger: db.logger)
        for try await (id, name) in rows.decode((Int64, String).self) { return User(id: id, username: name) }
        return nil
    }
}

package struct PostgresRefreshTokenRepository: RefreshTokenRepository {
    let db: PostgresDatabase
    package init(_ db: PostgresDatabase) { self.db = db }

    package func insert(tokenHash: String, userId: Int64, family: String, expiresAt: Date) async throws {
        try await db.client.query("""
            INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at) VALUES (\(tokenHash), \(userId), \(family), \(expiresAt.seconds))
            """, logger: db.logger)
    }

    package func rotate(tokenHash: String, newTokenHash: String, sealedSuccessor: Data, newExpiresAt: Date, grace: TimeInterval,
                        now: Date) async throws -> RotationOutcome {
        let logger = db.logger
        return try await db.client.withTransaction(logger: logger) { connection -> RotationOutcome in
            let rows = try await connection.query("""
                SELECT user_id, family, expires_at, used_at, revoked_at, successor_sealed FROM refresh_tokens
                WHERE token_hash = \(tokenHash) FOR UPDATE
                """, logger: logger)
            var found: (Int64, String, Double, Double?, Double?, Data?)?
            for try await row in rows.decode((Int64, String, Double, Double?, Double?, Data?).self) { found = row }
            guard let (userId, family, expiresAt, usedAt, revokedAt, sealed) = found else { return .unknown }
            if revokedAt != nil { return .revoked }
            if let usedAt {
                if now.seconds - usedAt <= grace, let sealed { return .replayed(userId: userId, family: family, sealedSuccessor: sealed) }
                try await connection.query("""
                    UPDATE refresh_tokens SET revoked_at = \(now.seconds) WHERE family = \(family) AND revoked_at IS NULL
                    """, logger: logger)
                return .reused(family: family)
            }
            if expiresAt <= now.seconds { return .expired }
            try await connection.query("""
                UPDATE refresh_tokens SET used_at = \(now.seconds), successor_sealed = \(sealedSuccessor) WHERE token_hash = \(tokenHash)
                """, logger: logger)
            try await connection.query("""
                INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at) VALUES (\(newTokenHash), \(userId), \(family), \(newExpiresAt.seconds))
                """, logger: logger)
            return .rotated(userId: userId, family: family)
        }
    }

    package func revokeFamily(of tokenHash: String, userId: Int64, now: Date) async throws -> String? {
        let rows = try await db.client.query("""
            UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, \(now.seconds))
            WHERE family = (SELECT family FROM refresh_tokens WHERE token_hash = \(tokenHash) AND user_id = \(userId))
            RETURNING family
            """, logger: db.logger)
        var family: String?
        for try await name in rows.decode(String.self) { family = name }
        return family
    }

    package func revoke(family: String, userId: Int64, now: Date) async throws {
        try await db.client.query("""
            UPDATE refresh_tokens SET revoked_at = \(now.seconds) WHERE family = \(family) AND user_id = \(userId) AND revoked_at IS NULL
            """, logger: db.logger)
    }

    package func families(revokedSince date: Date) async throws -> [String] {
        let rows = try await db.client.query("SELECT DISTINCT family FROM refresh_tokens WHERE revoked_at >= \(date.seconds)", logger: db.logger)
        var families: [String] = []
        for try await family in rows.decode(String.self) { families.append(family) }
        return families
    }
}

package struct PostgresRoomRepository: RoomRepository {
    let db: PostgresDatabase
    package init(_ db: PostgresDatabase) { self.db = db }

    package func create(name: String, isPrivate: Bool, creator: Int64, members: [Int64]) async throws -> Room {
        let logger = db.logger
        let now = Date()
        let id = try await db.client.withTransaction(logger: logger) { connection -> Int64 in
            let rows = try await connection.query("""
                INSERT INTO rooms (name, is_private, created_by, created_at) VALUES (\(name), \(isPrivate), \(creator), \(now.seconds)) RETURNING id
                """, logger: logger)
            var id: Int64 = 0
            for try await value in rows.decode(Int64.self) { id = value }
            for member in Set(members + [creator]) {
                try await connection.query("""
                    INSERT INTO room_members (room_id, user_id, joined_at) VALUES (\(id), \(member), \(now.seconds)) ON CONFLICT DO NOTHING
                    """, logger: logger)
            }
            return id
        }
        return Room(id: id, name: name, isPrivate: isPrivate, createdBy: creator, createdAt: Date(seconds: now.seconds))
    }

    package func room(id: Int64) async throws -> Room? {
        let rows = try await db.client.query("SELECT id, name, is_private, created_by, created_at FROM rooms WHERE id = \(id)", logger: db.logger)
        for try await (id, name, isPrivate, creator, created) in rows.decode((Int64, String, Bool, Int64, Double).self) {
            return Room(id: id, name: name, isPrivate: isPrivate, createdBy: creator, createdAt: Date(seconds: created))
        }
        return nil
    }

    package func isMember(roomId: Int64, userId: Int64) async throws -> Bool {
        let rows = try await db.client.query("""
            SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = \(roomId) AND user_id = \(userId))
            """, logger: db.logger)
        for try await member in rows.decode(Bool.self) { return member }
        return false
    }

    package func addMember(roomId: Int64, userId: Int64) async throws -> Bool {
        // A new member starts with the history already read, so the unread count means "since I joined".
        let rows = try await db.client.query("""
            INSERT INTO room_members (room_id, user_id, joined_at, last_read_message_id)
            VALUES (\(roomId), \(userId), \(Date().seconds), COALESCE((SELECT MAX(id) FROM messages WHERE room_id = \(roomId)), 0))
            ON CONFLICT DO NOTHING RETURNING user_id
            """, logger: db.logger)
        return try await !rows.all().isEmpty
    }

    package func removeMember(roomId: Int64, userId: Int64) async throws -> Bool {
        let rows = try await db.client.query("""
            DELETE FROM room_members WHERE room_id = \(roomId) AND user_id = \(userId) RETURNING user_id
            """, logger: db.logger)
        return try await !rows.all().isEmpty
    }

    package func members(roomId: Int64) async throws -> [User] {
        let rows = try await db.client.query("""
            SELECT users.id, users.username FROM room_members JOIN users ON users.id = room_members.user_id
            WHERE room_members.room_id = \(roomId) ORDER BY users.username
            """, logger: db.logger)
        var users: [User] = []
        for try await (id, name) in rows.decode((Int64, String).self) { users.append(User(id: id, username: name)) }
        return users
    }

    package func summaries(userId: Int64) async throws -> [RoomSummary] {
        let rows = try await db.client.query("""
            SELECT rooms.id, rooms.name, rooms.is_private, rooms.created_by, rooms.created_at,
                   room_members.user_id IS NOT NULL AS is_member,
                   (SELECT COUNT(*) FROM room_members m WHERE m.room_id = rooms.id) AS member_count,
                   CASE WHEN room_members.user_id IS NULL THEN 0 ELSE
                       (SELECT COUNT(*) FROM messages WHERE messages.room_id = rooms.id
                            AND messages.id > room_members.last_read_message_id AND messages.sender_id != \(userId)) END AS unread_count,
                   (SELECT MAX(id) FROM messages WHERE messages.room_id = rooms.id) AS last_message_id
            FROM rooms LEFT JOIN room_members ON room_members.room_id = rooms.id AND room_members.user_id = \(userId)
            WHERE room_members.user_id IS NOT NULL OR rooms.is_private = false
            ORDER BY is_member DESC, COALESCE((SELECT MAX(id) FROM messages WHERE messages.room_id = rooms.id), 0) DESC, rooms.id DESC
            """, logger: db.logger)
        var summaries: [RoomSummary] = []
        for try await (id, name, isPrivate, creator, created, isMember, members, unread, lastId)
            in rows.decode((Int64, String, Bool, Int64, Double, Bool, Int64, Int64, Int64?).self) {
            summaries.append(RoomSummary(room: Room(id: id, name: name, isPrivate: isPrivate, createdBy: creator, createdAt: Date(seconds: created)),
                                         isMember: isMember, memberCount: Int(members), unreadCount: Int(unread),
                                         lastMessage: try await lastId.asyncMap { try await PostgresMessageRepository(db).message(id: $0) } ?? nil))
        }
        return summaries
    }

    package func markRead(roomId: Int64, userId: Int64, messageId: Int64) async throws -> Int64 {
        let rows = try await db.client.query("""
            UPDATE room_members SET last_read_message_id = GREATEST(last_read_message_id, \(messageId))
            WHERE room_id = \(roomId) AND user_id = \(userId) RETURNING last_read_message_id
            """, logger: db.logger)
        for try await marker in rows.decode(Int64.self) { return marker }
        return 0
    }

    package func markAllRead(roomId: Int64, userId: Int64) async throws -> (count: Int, newest: Int64?) {
        let logger = db.logger
        return try await db.client.withTransaction(logger: logger) { connection -> (count: Int, newest: Int64?) in
            var marker: Int64?
            for try await value in try await connection.query("""
                SELECT last_read_message_id FROM room_members WHERE room_id = \(roomId) AND user_id = \(userId) FOR UPDATE
                """, logger: logger).decode(Int64.self) { marker = value }
            guard let marker else { return (0, nil) }
            var newest: Int64?, count = 0
            for try await (max, unread) in try await connection.query("""
                SELECT (SELECT MAX(id) FROM messages WHERE room_id = \(roomId)),
                       (SELECT COUNT(*) FROM messages WHERE room_id = \(roomId) AND id > \(marker) AND sender_id != \(userId))
                """, logger: logger).decode((Int64?, Int64).self) {
                newest = max
                count = Int(unread)
            }
            if let newest, newest > marker {
                try await connection.query("""
                    UPDATE room_members SET last_read_message_id = \(newest) WHERE room_id = \(roomId) AND user_id = \(userId)
                    """, logger: logger)
            }
            return (count, newest)
        }
    }
}

private extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}

package struct PostgresMessageRepository: MessageRepository {
    let db: PostgresDatabase
    package init(_ db: PostgresDatabase) { self.db = db }

    static let columns = """
        messages.id, messages.room_id, messages.sender_id, users.username, messages.content, messages.client_id,
        messages.attachment, messages.file_id, messages.created_at
        """

    static func messages(_ rows: PostgresRowSequence) async throws -> [StoredMessage] {
        var messages: [StoredMessage] = []
        for try await (id, room, sender, name, content, clientId, attachment, fileId, created)
            in rows.decode((Int64, Int64, Int64, String, String, String?, String?, String?, Double).self) {
            messages.append(StoredMessage(id: id, roomId: room, senderId: sender, senderName: name, content: content, clientId: clientId,
                                          attachment: try decodeAttachment(attachment), fileId: fileId, createdAt: Date(seconds: created)))
        }
        return messages
    }

    package func insert(roomId: Int64, sender: User, content: String, clientId: String?, attachment: Attachment?, fileId: String?,
                        now: Date) async throws -> (StoredMessage, isNew: Bool) {
        let logger = db.logger
        let json = try encode(attachment)
        return try await db.client.withTransaction(logger: logger) { connection -> (StoredMessage, isNew: Bool) in
            // One insert per room at a time: ids within a room follow commit order, which the
            // brokers' catch-up by id relies on.
            try await connection.query("SELECT id FROM rooms WHERE id = \(roomId) FOR UPDATE", logger: logger)
            // A resend with a known client_id (even one racing the first send) is the stored message.
            let inserted = try await connection.query("""
                INSERT INTO messages (room_id, sender_id, content, client_id, attachment, file_id, created_at)
                VALUES (\(roomId), \(sender.id), \(content), \(clientId), \(json), \(fileId), \(now.seconds))
                ON CONFLICT (sender_id, room_id, client_id) WHERE client_id IS NOT NULL DO NOTHING RETURNING id
                """, logger: logger)
            var id: Int64?
            for try await value in inserted.decode(Int64.self) { id = value }
            guard let id else {
                let existing = try await Self.messages(try await connection.query("""
                    SELECT \(unescaped: Self.columns) FROM messages JOIN users ON users.id = messages.sender_id
                    WHERE messages.sender_id = \(sender.id) AND messages.room_id = \(roomId) AND messages.client_id = \(clientId)
                    """, logger: logger))
                guard let first = existing.first else { throw PostgresRaceError() }
                return (first, false)
            }
            // The sender has read their own message.
            try await connection.query("""
                UPDATE room_members SET last_read_message_id = \(id) WHERE room_id = \(roomId) AND user_id = \(sender.id)
                """, logger: logger)
            return (StoredMessage(id: id, roomId: roomId, senderId: sender.id, senderName: sender.username, content: content,
                                  clientId: clientId, attachment: attachment, fileId: fileId, createdAt: Date(seconds: now.seconds)), true)
        }
    }

    package func history(roomId: Int64, before: Int64?, limit: Int) async throws -> [StoredMessage] {
        try await Self.messages(try await db.client.query("""
            SELECT \(unescaped: Self.columns) FROM messages JOIN users ON users.id = messages.sender_id
            WHERE messages.room_id = \(roomId) AND messages.id < \(before ?? Int64.max) ORDER BY messages.id DESC LIMIT \(limit)
            """, logger: db.logger))
    }

    package func message(id: Int64) async throws -> StoredMessage? {
        try await Self.messages(try await db.client.query("""
            SELECT \(unescaped: Self.columns) FROM messages JOIN users ON users.id = messages.sender_id WHERE messages.id = \(id)
            """, logger: db.logger)).first
    }
}

/// A row that a conflicting statement promised is not there (it was deleted in between).
struct PostgresRaceError: Error {}

package struct PostgresReactionRepository: ReactionRepository {
    let db: PostgresDatabase
    package init(_ db: PostgresDatabase) { self.db = db }

    static func reactions(_ rows: PostgresRowSequence) async throws -> [StoredReaction] {
        var reactions: [StoredReaction] = []
        for try await (id, message, user, type, created, updated) in rows.decode((Int64, Int64, Int64, String, Double, Double).self) {
            reactions.append(StoredReaction(id: id, messageId: message, userId: user, type: type, createdAt: Date(seconds: created),
                                            updatedAt: Date(seconds: updated)))
        }
        return reactions
    }

    package func set(messageId: Int64, userId: Int64, type: String, now: Date) async throws -> (StoredReaction, changed: Bool) {
        let logger = db.logger
        return try await db.client.withTransaction(logger: logger) { connection -> (StoredReaction, changed: Bool) in
            let existing = try await Self.reactions(try await connection.query("""
                SELECT id, message_id, user_id, reaction_type, created_at, updated_at FROM reactions
                WHERE message_id = \(messageId) AND user_id = \(userId) FOR UPDATE
                """, logger: logger)).first
            if var existing {
                guard existing.type != type else { return (existing, false) }
                try await connection.query("""
                    UPDATE reactions SET reaction_type = \(type), updated_at = \(now.seconds) WHERE id = \(existing.id)
                    """, logger: logger)
                existing.type = type
                existing.updatedAt = Date(seconds: now.seconds)
                return (existing, true)
            }
            let inserted = try await Self.reactions(try await connection.query("""
                INSERT INTO reactions (message_id, user_id, reaction_type, created_at, updated_at)
                VALUES (\(messageId), \(userId), \(type), \(now.seconds), \(now.seconds))
                RETURNING id, message_id, user_id, reaction_type, created_at, updated_at
                """, logger: logger))
            guard let reaction = inserted.first else { throw PostgresRaceError() }
            return (reaction, true)
        }
    }

    package func remove(messageId: Int64, userId: Int64) async throws -> StoredReaction? {
        try await Self.reactions(try await db.client.query("""
            DELETE FROM reactions WHERE message_id = \(messageId) AND user_id = \(userId)
            RETURNING id, message_id, user_id, reaction_type, created_at, updated_at
            """, logger: db.logger)).first
    }

    package func summaries(messageIds: [Int64]) async throws -> [Int64: [ReactionGroup]] {
        guard !messageIds.isEmpty else { return [:] }
        let rows = try await db.client.query("""
            SELECT reactions.message_id, reactions.reaction_type, users.username FROM reactions
            JOIN users ON users.id = reactions.user_id
            WHERE reactions.message_id = ANY(\(messageIds)) ORDER BY reactions.id
            """, logger: db.logger)
        var reactions: [(messageId: Int64, type: String, username: String)] = []
        for try await reaction in rows.decode((Int64, String, String).self) { reactions.append(reaction) }
        return ReactionGroup.grouping(reactions)
    }
}
