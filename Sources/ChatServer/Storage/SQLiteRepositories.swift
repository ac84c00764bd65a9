import Foundation
import GRDB

/// The SQLite implementations of the repositories, on one `DatabasePool`.
struct SQLiteUserRepository: UserRepository {
    let pool: DatabasePool

    func create(username: String, passwordHash: String) async throws -> User? {
        try await pool.write { db in
            do {
                try db.execute(sql: "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
                               arguments: [username, passwordHash, Date().timeIntervalSince1970])
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                return nil
            }
            return User(id: db.lastInsertedRowID, username: username)
        }
    }

    func credentials(username: String) async throws -> (User, String)? {
        try await pool.read { db in
            // The column compares ignoring case (names are unique that way); a login must match exactly.
            try Row.fetchOne(db, sql: "SELECT id, username, password_hash FROM users WHERE username = ? COLLATE BINARY",
                             arguments: [username])
                .map { (User(id: $0["id"], username: $0["username"]), $0["password_hash"]) }
        }
    }

    func user(id: Int64) async throws -> User? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT id, username FROM users WHERE id = ?", arguments: [id])
                .map { User(id: $0["id"], username: $0["username"]) }
        }
    }

    func user(username: String) async throws -> User? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT id, username FROM users WHERE username = ?", arguments: [username])
                .map { User(id: $0["id"], username: $0["username"]) }
        }
    }
}

struct SQLiteRefreshTokenRepository: RefreshTokenRepository {
    let pool: DatabasePool

    func insert(tokenHash: String, userId: Int64, family: String, expiresAt: Date) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at) VALUES (?, ?, ?, ?)",
                           arguments: [tokenHash, userId, family, expiresAt.timeIntervalSince1970])
        }
    }

    func rotate(tokenHash: String, newTokenHash: String, sealedSuccessor: Data, newExpiresAt: Date, grace: TimeInterval,
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

    func revokeFamily(of tokenHash: String, userId: Int64, now: Date) async throws -> String? {
        try await pool.write { db in
            guard let family = try String.fetchOne(db, sql: "SELECT family FROM refresh_tokens WHERE token_hash = ? AND user_id = ?",
                                                   arguments: [tokenHash, userId]) else { return nil }
            try db.execute(sql: "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
                           arguments: [now.timeIntervalSince1970, family])
            return family
        }
    }

    func revoke(family: String, userId: Int64, now: Date) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND user_id = ? AND revoked_at IS NULL",
                           arguments: [now.timeIntervalSince1970, family, userId])
        }
    }

    func families(revokedSince date: Date) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT DISTINCT family FROM refresh_tokens WHERE revoked_at >= ?",
                                arguments: [date.timeIntervalSince1970])
        }
    }
}

struct SQLiteRoomRepository: RoomRepository {
    let pool: DatabasePool

    func create(name: String, isPrivate: Bool, creator: Int64, members: [Int64]) async throws -> Room {
        try await pool.write { db in
            let now = Date()
            try db.execute(sql: "INSERT INTO rooms (name, is_private, created_by, created_at) VALUES (?, ?, ?, ?)",
                           arguments: [name, isPrivate, creator, now.timeIntervalSince1970])
            let id = db.lastInsertedRowID
            for member in Set(members + [creator]) {
                try db.execute(sql: "INSERT OR IGNORE INTO room_members (room_id, user_id, joined_at) VALUES (?, ?, ?)",
                               arguments: [id, member, now.timeIntervalSince1970])
            }
            return Room(id: id, name: name, isPrivate: isPrivate, createdBy: creator, createdAt: now)
        }
    }

    func room(id: Int64) async throws -> Room? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM rooms WHERE id = ?", arguments: [id]).map(Self.room)
        }
    }

    static func room(_ row: Row) -> Room {
        Room(id: row["id"], name: row["name"], isPrivate: row["is_private"], createdBy: row["created_by"],
             createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    func isMember(roomId: Int64, userId: Int64) async throws -> Bool {
        try await pool.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = ? AND user_id = ?)",
                              arguments: [roomId, userId]) ?? false
        }
    }

    func addMember(roomId: Int64, userId: Int64) async throws -> Bool {
        try await pool.write { db in
            // A new member starts with the history already read, so the unread count means "since I joined".
            try db.execute(sql: """
                INSERT OR IGNORE INTO room_members (room_id, user_id, joined_at, last_read_message_id)
                VALUES (?, ?, ?, COALESCE((SELECT MAX(id) FROM messages WHERE room_id = ?), 0))
                """, arguments: [roomId, userId, Date().timeIntervalSince1970, roomId])
            return db.changesCount > 0
        }
    }

    func removeMember(roomId: Int64, userId: Int64) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM room_members WHERE room_id = ? AND user_id = ?", arguments: [roomId, userId])
            return db.changesCount > 0
        }
    }

    func members(roomId: Int64) async throws -> [User] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT users.id, users.username FROM room_members JOIN users ON users.id = room_members.user_id
                WHERE room_members.room_id = ? ORDER BY users.username
                """, arguments: [roomId]).map { User(id: $0["id"], username: $0["username"]) }
        }
    }

    func summaries(userId: Int64) async throws -> [RoomSummary] {
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
                    room: Self.room(row), isMember: row["is_member"], memberCount: row["member_count"], unreadCount: row["unread_count"],
                    lastMessage: try lastId.flatMap { try SQLiteMessageRepository.fetch(db, id: $0) })
            }
        }
    }

    func markAllRead(roomId: Int64, userId: Int64) async throws -> (count: Int, newest: Int64?) {
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

    func markRead(roomId: Int64, userId: Int64, messageId: Int64) async throws -> Int64 {
        try await pool.write { db in
            try db.execute(sql: """
                UPDATE room_members SET last_read_message_id = MAX(last_read_message_id, ?) WHERE room_id = ? AND user_id = ?
                """, arguments: [messageId, roomId, userId])
            return try Int64.fetchOne(db, sql: "SELECT last_read_message_id FROM room_members WHERE room_id = ? AND user_id = ?",
                                      arguments: [roomId, userId]) ?? 0
        }
    }
}

struct SQLiteMessageRepository: MessageRepository {
    let pool: DatabasePool

    private static let select = """
        SELECT messages.*, users.username AS sender_name FROM messages JOIN users ON users.id = messages.sender_id
        """

    static func message(_ row: Row) -> StoredMessage {
        StoredMessage(id: row["id"], roomId: row["room_id"], senderId: row["sender_id"], senderName: row["sender_name"],
                      content: row["content"], clientId: row["client_id"], attachmentJSON: row["attachment"],
                      fileId: row["file_id"], createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    static func fetch(_ db: Database, id: Int64) throws -> StoredMessage? {
        try Row.fetchOne(db, sql: "\(select) WHERE messages.id = ?", arguments: [id]).map(message)
    }

    func insert(roomId: Int64, sender: User, content: String, clientId: String?, attachmentJSON: String?, fileId: String?,
                now: Date) async throws -> (StoredMessage, isNew: Bool) {
        try await pool.write { db in
            if let clientId, let existing = try Row.fetchOne(
                db, sql: "\(Self.select) WHERE messages.sender_id = ? AND messages.room_id = ? AND messages.client_id = ?",
                arguments: [sender.id, roomId, clientId]) {
                return (Self.message(existing), false)
            }
            try db.execute(sql: """
                INSERT INTO messages (room_id, sender_id, content, client_id, attachment, file_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [roomId, sender.id, content, clientId, attachmentJSON, fileId, now.timeIntervalSince1970])
            let id = db.lastInsertedRowID
            // The sender has read their own message.
            try db.execute(sql: "UPDATE room_members SET last_read_message_id = ? WHERE room_id = ? AND user_id = ?",
                           arguments: [id, roomId, sender.id])
            return (StoredMessage(id: id, roomId: roomId, senderId: sender.id, senderName: sender.username, content: content,
                                  clientId: clientId, attachmentJSON: attachmentJSON, fileId: fileId, createdAt: now), true)
        }
    }

    func history(roomId: Int64, before: Int64?, limit: Int) async throws -> [StoredMessage] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "\(Self.select) WHERE messages.room_id = ? AND messages.id < ? ORDER BY messages.id DESC LIMIT ?",
                             arguments: [roomId, before ?? Int64.max, limit]).map(Self.message)
        }
    }

    func message(id: Int64) async throws -> StoredMessage? {
        try await pool.read { db in try Self.fetch(db, id: id) }
    }
}

struct SQLiteReactionRepository: ReactionRepository {
    let pool: DatabasePool

    static func reaction(_ row: Row) -> StoredReaction {
        StoredReaction(id: row["id"], messageId: row["message_id"], userId: row["user_id"], type: row["reaction_type"],
                       createdAt: Date(timeIntervalSince1970: row["created_at"]), updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
    }

    func set(messageId: Int64, userId: Int64, type: String, now: Date) async throws -> (StoredReaction, changed: Bool) {
        try await pool.write { db in
            let existing = try Row.fetchOne(db, sql: "SELECT * FROM reactions WHERE message_id = ? AND user_id = ?",
                                            arguments: [messageId, userId]).map(Self.reaction)
            if var existing {
                guard existing.type != type else { return (existing, false) }
                try db.execute(sql: "UPDATE reactions SET reaction_type = ?, updated_at = ? WHERE id = ?",
                               arguments: [type, now.timeIntervalSince1970, existing.id])
                existing.type = type
                existing.updatedAt = now
                return (existing, true)
            }
            try db.execute(sql: """
                INSERT INTO reactions (message_id, user_id, reaction_type, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
                """, arguments: [messageId, userId, type, now.timeIntervalSince1970, now.timeIntervalSince1970])
            return (StoredReaction(id: db.lastInsertedRowID, messageId: messageId, userId: userId, type: type, createdAt: now, updatedAt: now), true)
        }
    }

    func remove(messageId: Int64, userId: Int64) async throws -> StoredReaction? {
        try await pool.write { db in
            guard let existing = try Row.fetchOne(db, sql: "SELECT * FROM reactions WHERE message_id = ? AND user_id = ?",
                                                  arguments: [messageId, userId]).map(Self.reaction) else { return nil }
            try db.execute(sql: "DELETE FROM reactions WHERE id = ?", arguments: [existing.id])
            return existing
        }
    }

    func summaries(messageIds: [Int64]) async throws -> [Int64: [ReactionGroup]] {
        guard !messageIds.isEmpty else { return [:] }
        return try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT reactions.message_id, reactions.reaction_type, users.username FROM reactions
                JOIN users ON users.id = reactions.user_id
                WHERE reactions.message_id IN (\(databaseQuestionMarks(count: messageIds.count)))
                ORDER BY reactions.id
                """, arguments: StatementArguments(messageIds))
            var result: [Int64: [ReactionGroup]] = [:]
            for row in rows {
                let messageId: Int64 = row["message_id"], type: String = row["reaction_type"], name: String = row["username"]
                var groups = result[messageId, default: []]
                if let index = groups.firstIndex(where: { $0.type == type }) {
                    groups[index].usernames.append(name)
                } else {
                    groups.append(ReactionGroup(type: type, usernames: [name]))
                }
                result[messageId] = groups
            }
            return result
        }
    }
}
