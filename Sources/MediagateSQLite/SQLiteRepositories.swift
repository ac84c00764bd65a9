import Foundation
import GRDB
import MediagateCore
import MediagateWire

/// The SQLite implementations of the repositories, on one `DatabasePool`.
package struct SQLiteUserRepository: UserRepository {
    let pool: DatabasePool

    package init(pool: DatabasePool) { self.pool = pool }

    package func create(username: String, passwordHash: String) async throws -> User? {
        try await pool.write { db in
            do {
                return try UserRecord(username: username, passwordHash: passwordHash, createdAt: Date()).inserted(db).user
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                return nil
            }
        }
    }

    package func credentials(username: String) async throws -> (User, String)? {
        try await pool.read { db in
            // The column compares ignoring case (names are unique that way); a login must match exactly.
            try UserRecord.fetchOne(db, sql: "SELECT * FROM users WHERE username = ? COLLATE BINARY", arguments: [username])
                .map { ($0.user, $0.passwordHash) }
        }
    }

    package func user(id: Int64) async throws -> User? {
        try await pool.read { db in
            try UserRecord.fetchOne(db, key: id)?.user
        }
    }

    package func user(username: String) async throws -> User? {
        try await pool.read { db in
            try UserRecord.filter(Column("username") == username).fetchOne(db)?.user
        }
    }
}

package struct SQLiteRefreshTokenRepository: RefreshTokenRepository {
    let pool: DatabasePool

    package init(pool: DatabasePool) { self.pool = pool }

    package func insert(tokenHash: String, userId: Int64, family: String, expiresAt: Date) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at) VALUES (?, ?, ?, ?)",
                           arguments: [tokenHash, userId, family, expiresAt.timeIntervalSince1970])
        }
    }

    package func rotate(tokenHash: String, newTokenHash: String, sealedSuccessor: Data, newExpiresAt: Date, grace: TimeInterval,
                now: Date) async throws -> RotationOutcome {
        try await pool.write { db in
            guard let row = try Row.fetchOne(db, sql: """
                SELECT user_id, family, expires_at, used_at, revoked_at, successor_sealed FROM refresh_tokens WHERE token_hash = ?
                """, arguments: [tokenHash]) else { return .unknown }
            let family: String = row["family"]
            let userId: Int64 = row["user_id"]
            if row["revoked_at"] as Double? != nil { return .revoked }
            if let usedAt = row["used_at"] as Double? {
                if now.timeIntervalSince1970 - usedAt <= grace, let sealed = row["successor_sealed"] as Data? {
                    return .replayed(userId: userId, family: family, sealedSuccessor: sealed)
                }
                try db.execute(sql: "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
                               arguments: [now.timeIntervalSince1970, family])
                return .reused(family: family)
            }
            if (row["expires_at"] as Double) <= now.timeIntervalSince1970 { return .expired }
            try db.execute(sql: "UPDATE refresh_tokens SET used_at = ?, successor_sealed = ? WHERE token_hash = ?",
                           arguments: [now.timeIntervalSince1970, sealedSuccessor, tokenHash])
            try db.execute(sql: "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at) VALUES (?, ?, ?, ?)",
                           arguments: [newTokenHash, userId, family, newExpiresAt.timeIntervalSince1970])
            return .rotated(userId: userId, family: family)
        }
    }

    package func revokeFamily(of tokenHash: String, userId: Int64, now: Date) async throws -> String? {
        try await pool.write { db in
            guard let family = try String.fetchOne(db, sql: "SELECT family FROM refresh_tokens WHERE token_hash = ? AND user_id = ?",
                                                   arguments: [tokenHash, userId]) else { return nil }
            try db.execute(sql: "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
                           arguments: [now.timeIntervalSince1970, family])
            return family
        }
    }

    package func revoke(family: String, userId: Int64, now: Date) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND user_id = ? AND revoked_at IS NULL",
                           arguments: [now.timeIntervalSince1970, family, userId])
        }
    }

    package func families(revokedSince date: Date) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT DISTINCT family FROM refresh_tokens WHERE revoked_at >= ?",
                                arguments: [date.timeIntervalSince1970])
        }
    }
}

package struct SQLiteRoomRepository: RoomRepository {
    let pool: DatabasePool

    package init(pool: DatabasePool) { self.pool = pool }

    package func create(name: String, isPrivate: Bool, creator: Int64, members: [Int64]) async throws -> Room {
        try await pool.write { db in
            let now = Date()
            let room = try RoomRecord(name: name, isPrivate: isPrivate, createdBy: creator, createdAt: now).inserted(db).room
            let id = room.id
            for member in Set(members + [creator]) {
                try db.execute(sql: "INSERT OR IGNORE INTO room_members (room_id, user_id, joined_at) VALUES (?, ?, ?)",
                               arguments: [id, member, now.timeIntervalSince1970])
            }
            return room
        }
    }

    package func room(id: Int64) async throws -> Room? {
        try await pool.read { db in
            try RoomRecord.fetchOne(db, key: id)?.room
        }
    }

    package func isMember(roomId: Int64, userId: Int64) async throws -> Bool {
        try await pool.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = ? AND user_id = ?)",
                              arguments: [roomId, userId]) ?? false
        }
    }

    package func addMember(roomId: Int64, userId: Int64) async throws -> Bool {
        try await pool.write { db in
            // A new member starts with the history already read, so the unread count means "since I joined".
            try db.execute(sql: """
                INSERT OR IGNORE INTO room_members (room_id, user_id, joined_at, last_read_message_id)
                VALUES (?, ?, ?, COALESCE((SELECT MAX(id) FROM messages WHERE room_id = ?), 0))
                """, arguments: [roomId, userId, Date().timeIntervalSince1970, roomId])
            return db.changesCount > 0
        }
    }

    package func removeMember(roomId: Int64, userId: Int64) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM room_members WHERE room_id = ? AND user_id = ?", arguments: [roomId, userId])
            return db.changesCount > 0
        }
    }

    package func members(roomId: Int64) async throws -> [User] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT users.id, users.username FROM room_members JOIN users ON users.id = room_members.user_id
                WHERE room_members.room_id = ? ORDER BY users.username
                """, arguments: [roomId]).map { User(id: $0["id"], username: $0["username"]) }
        }
    }

    package func summaries(userId: Int64) async throws -> [RoomSummary] {
        try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT rooms.*, room_members.user_id IS NOT NULL AS is_member,
                       (SELECT COUNT(*) FROM room_members m WHERE m.room_id = rooms.id) AS member_count,
                       CASE WHEN room_members.user_id IS NULL THEN 0 ELSE
                           (SELECT COUNT(*) FROM messages WHERE messages.room_id = rooms.id
                                AND messages.id > room_members.last_read_message_id AND messages.sender_id != ?) END AS unread_count,
                       (SELECT MAX(id) FROM messages WHERE messages.room_id = rooms.id) AS last_message_id
                FROM rooms LEFT JOIN room_members ON room_members.room_id = rooms.id AND room_members.user_id = ?
                WHERE room_members.user_id IS NOT NULL OR rooms.is_private = 0
                ORDER BY is_member DESC, COALESCE(last_message_id, 0) DESC, rooms.id DESC
                """, arguments: [userId, userId])
            return try rows.map { row in
                let lastId: Int64? = row["last_message_id"]
                return RoomSummary(
                    room: try RoomRecord(row: row).room, isMember: row["is_member"], memberCount: row["member_count"], unreadCount: row["unread_count"],
                    lastMessage: try lastId.flatMap { try SQLiteMessageRepository.fetch(db, id: $0) })
            }
        }
    }

    package func markAllRead(roomId: Int64, userId: Int64) async throws -> (count: Int, newest: Int64?) {
        try await pool.write { db in
            guard let marker = try Int64.fetchOne(db, sql: "SELECT last_read_message_id FROM room_members WHERE room_id = ? AND user_id = ?",
                                                  arguments: [roomId, userId]) else { return (0, nil) }
            let newest = try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM messages WHERE room_id = ?", arguments: [roomId])
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM messages WHERE room_id = ? AND id > ? AND sender_id != ?",
                                         arguments: [roomId, marker, userId]) ?? 0
            if let newest, newest > marker {
                try db.execute(sql: "UPDATE room_members SET last_read_message_id = ? WHERE room_id = ? AND user_id = ?",
                               arguments: [newest, roomId, userId])
            }
            return (count, newest)
        }
    }

    package func markRead(roomId: Int64, userId: Int64, messageId: Int64) async throws -> Int64 {
        try await pool.write { db in
            try db.execute(sql: """
                UPDATE room_members SET last_read_message_id = MAX(last_read_message_id, ?) WHERE room_id = ? AND user_id = ?
                """, arguments: [messageId, roomId, userId])
            return try Int64.fetchOne(db, sql: "SELECT last_read_message_id FROM room_members WHERE room_id = ? AND user_id = ?",
                                      arguments: [roomId, userId]) ?? 0
        }
    }
}

package struct SQLiteMessageRepository: MessageRepository {
    let pool: DatabasePool

    package init(pool: DatabasePool) { self.pool = pool }

    static func fetch(_ db: Database, id: Int64) throws -> StoredMessage? {
        try MessageWithSender.fetchOne(db, sql: "\(MessageWithSender.select) WHERE messages.id = ?", arguments: [id])?.message
    }

    package func insert(roomId: Int64, sender: User, content: String, clientId: String?, attachment: Attachment?, fileId: String?,
                now: Date) async throws -> (StoredMessage, isNew: Bool) {
        try await pool.write { db in
            if let clientId, let existing = try MessageWithSender.fetchOne(
                db, sql: "\(MessageWithSender.select) WHERE messages.sender_id = ? AND messages.room_id = ? AND messages.client_id = ?",
                arguments: [sender.id, roomId, clientId]) {
                return (existing.message, false)
            }
            let record = try MessageRecord(roomId: roomId, senderId: sender.id, content: content, clientId: clientId,
                                           attachment: attachment, fileId: fileId, createdAt: now).inserted(db)
            let id = record.id ?? db.lastInsertedRowID
            // The sender has read their own message.
            try db.execute(sql: "UPDATE room_members SET last_read_message_id = ? WHERE room_id = ? AND user_id = ?",
                           arguments: [id, roomId, sender.id])
            return (StoredMessage(id: id, roomId: roomId, senderId: sender.id, senderName: sender.username, content: content,
                                  clientId: clientId, attachment: attachment, fileId: fileId, createdAt: now), true)
        }
    }

    package func history(roomId: Int64, before: Int64?, limit: Int) async throws -> [StoredMessage] {
        try await pool.read { db in
            try MessageWithSender.fetchAll(
                db, sql: "\(MessageWithSender.select) WHERE messages.room_id = ? AND messages.id < ? ORDER BY messages.id DESC LIMIT ?",
                arguments: [roomId, before ?? Int64.max, limit]).map(\.message)
        }
    }

    package func message(id: Int64) async throws -> StoredMessage? {
        try await pool.read { db in try Self.fetch(db, id: id) }
    }
}

package struct SQLiteReactionRepository: ReactionRepository {
    let pool: DatabasePool

    package init(pool: DatabasePool) { self.pool = pool }

    private static func existing(_ db: Database, messageId: Int64, userId: Int64) throws -> ReactionRecord? {
        try ReactionRecord.filter(Column("message_id") == messageId && Column("user_id") == userId).fetchOne(db)
    }

    package func set(messageId: Int64, userId: Int64, type: String, now: Date) async throws -> (StoredReaction, changed: Bool) {
        try await pool.write { db in
            if var existing = try Self.existing(db, messageId: messageId, userId: userId) {
                guard existing.reactionType != type else { return (existing.reaction, false) }
                existing.reactionType = type
                existing.updatedAt = now
                try existing.update(db)
                return (existing.reaction, true)
            }
            let inserted = try ReactionRecord(messageId: messageId, userId: userId, reactionType: type, createdAt: now, updatedAt: now)
                .inserted(db)
            return (inserted.reaction, true)
        }
    }

    package func remove(messageId: Int64, userId: Int64) async throws -> StoredReaction? {
        try await pool.write { db in
            guard let existing = try Self.existing(db, messageId: messageId, userId: userId) else { return nil }
            try existing.delete(db)
            return existing.reaction
        }
    }

    package func summaries(messageIds: [Int64]) async throws -> [Int64: [ReactionGroup]] {
        guard !messageIds.isEmpty else { return [:] }
        return try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT reactions.message_id, reactions.reaction_type, users.username FROM reactions
                JOIN users ON users.id = reactions.user_id
                WHERE reactions.message_id IN (\(databaseQuestionMarks(count: messageIds.count)))
                ORDER BY reactions.id
                """, arguments: StatementArguments(messageIds))
            return ReactionGroup.grouping(rows.map { (messageId: $0["message_id"], type: $0["reaction_type"], username: $0["username"]) })
        }
    }
}
