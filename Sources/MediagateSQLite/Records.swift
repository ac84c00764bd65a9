import Foundation
import GRDB
import MediagateCore
import MediagateWire

/// GRDB records, one per table: Swift names in camelCase, columns in snake_case, dates as
/// seconds since 1970 (REAL), nested values (attachments) as JSON text.
protocol SnakeCaseRecord: FetchableRecord, MutablePersistableRecord, Codable {}

extension SnakeCaseRecord {
    static var databaseColumnDecodingStrategy: DatabaseColumnDecodingStrategy { .convertFromSnakeCase }
    static var databaseColumnEncodingStrategy: DatabaseColumnEncodingStrategy { .convertToSnakeCase }
    static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { .timeIntervalSince1970 }
    static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { .timeIntervalSince1970 }
}

struct UserRecord: SnakeCaseRecord {
    static let databaseTableName = "users"
    var id: Int64?
    var username: String
    var passwordHash: String
    var createdAt: Date

    var user: User { User(id: id ?? 0, username: username) }

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

struct RoomRecord: SnakeCaseRecord {
    static let databaseTableName = "rooms"
    var id: Int64?
    var name: String
    var isPrivate: Bool
    var createdBy: Int64
    var createdAt: Date

    var room: Room { Room(id: id ?? 0, name: name, isPrivate: isPrivate, createdBy: createdBy, createdAt: createdAt) }

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

struct MessageRecord: SnakeCaseRecord {
    static let databaseTableName = "messages"
    var id: Int64?
    var roomId: Int64
    var senderId: Int64
    var content: String
    var clientId: String?
    var attachment: Attachment?
    var fileId: String?
    var createdAt: Date

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// A message row joined with its sender's name.
struct MessageWithSender: FetchableRecord, Decodable {
    static var databaseColumnDecodingStrategy: DatabaseColumnDecodingStrategy { .convertFromSnakeCase }
    static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { .timeIntervalSince1970 }
    var id: Int64
    var roomId: Int64
    var senderId: Int64
    var senderName: String
    var content: String
    var clientId: String?
    var attachment: Attachment?
    var fileId: String?
    var createdAt: Date

    /// `messages.*` and the sender's name.
    static let select = "SELECT messages.*, users.username AS sender_name FROM messages JOIN users ON users.id = messages.sender_id"

    var message: StoredMessage {
        StoredMessage(id: id, roomId: roomId, senderId: senderId, senderName: senderName, content: content, clientId: clientId,
                      attachment: attachment, fileId: fileId, createdAt: createdAt)
    }
}

struct ReactionRecord: SnakeCaseRecord {
    static let databaseTableName = "reactions"
    var id: Int64?
    var messageId: Int64
    var userId: Int64
    var reactionType: String
    var createdAt: Date
    var updatedAt: Date

    var reaction: StoredReaction {
        StoredReaction(id: id ?? 0, messageId: messageId, userId: userId, type: reactionType, createdAt: createdAt, updatedAt: updatedAt)
    }

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

struct UploadRow: SnakeCaseRecord {
    static let databaseTableName = "uploads"
    var id: String
    var userId: Int64
    var length: Int64?
    var offset: Int64
    var metadata: String?
    var createdAt: Date
    var expiresAt: Date
    var completedAt: Date?
    var fileId: String?
    var rejection: String?
    var storeState: String?
    var handoff: String?

    init(_ record: UploadRecord) {
        id = record.id
        userId = record.userId
        length = record.length
        offset = record.offset
        metadata = record.metadata
        createdAt = record.createdAt
        expiresAt = record.expiresAt
        completedAt = record.completedAt
        fileId = record.fileId
        rejection = record.rejection
        storeState = record.storeState
        handoff = record.handoff?.json
    }

    var record: UploadRecord {
        UploadRecord(id: id, userId: userId, length: length, offset: offset, metadata: metadata, createdAt: createdAt,
                     expiresAt: expiresAt, completedAt: completedAt, fileId: fileId, rejection: rejection, storeState: storeState,
                     handoff: UploadHandoff(json: handoff))
    }
}

struct FileRecord: SnakeCaseRecord {
    static let databaseTableName = "files"
    var id: String
    var publicName: String?
    var uploadId: String?
    var ownerId: Int64
    var sha256: String
    var size: Int64
    var attachment: Attachment
    var errorCode: String?
    var createdAt: Date

    init(_ file: StoredFile, createdAt: Date) {
        id = file.id
        publicName = file.publicName
        uploadId = file.uploadId
        ownerId = file.ownerId
        sha256 = file.sha256
        size = file.size
        attachment = file.attachment
        errorCode = file.errorCode
        self.createdAt = createdAt
    }

    var file: StoredFile {
        StoredFile(id: id, publicName: publicName, uploadId: uploadId, ownerId: ownerId, sha256: sha256, size: size,
                   attachment: attachment, errorCode: errorCode)
    }
}

struct JobRecord: SnakeCaseRecord {
    static let databaseTableName = "jobs"
    var id: Int64?
    var uploadId: String
    var contentSha256: String?
    var attempts: Int
    var runAfter: Date
    var leasedUntil: Date?
    var leasedBy: String?
    var lastError: String?

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}
