import Foundation
import Hummingbird

// The JSON the seed article's client and our CLI speak. Keys are snake_case, as in the seed's
// `AuthResponse`, `RefreshTokenResponse` and `WebSocketMessage`.

struct CredentialsBody: Decodable {
    var username: String
    var password: String
}

struct RefreshBody: Decodable {
    var refresh_token: String
}

struct LogoutBody: Decodable {
    var refresh_token: String?
}

/// A user. `id` is a string: the seed app decodes it as one (its login fails on a number).
struct UserJSON: Codable, Equatable, ResponseEncodable {
    var id: String
    var username: String

    init(_ user: User) {
        id = String(user.id)
        username = user.username
    }
}

struct TokenResponse: ResponseEncodable {
    var access_token: String
    var refresh_token: String
    var token_type = "bearer"
    var expires_in: Int
    var user: UserJSON

    init(_ tokens: IssuedTokens) {
        access_token = tokens.accessToken
        refresh_token = tokens.refreshToken
        expires_in = tokens.expiresIn
        user = UserJSON(tokens.user)
    }
}

struct CreateRoomBody: Decodable {
    var name: String
    var is_private: Bool?
    /// User names to add besides the creator.
    var members: [String]?
}

struct MarkReadJSON: ResponseEncodable {
    var message: String
    var read_count: Int
}

struct AddMemberBody: Decodable {
    var username: String
}

struct RoomJSON: ResponseEncodable {
    var id: Int64
    var name: String
    var is_private: Bool
    var created_by: Int64
    var created_at: String
    var member_count: Int?
    var unread_count: Int?
    /// False for a public room the caller can see but has not entered yet.
    var is_member: Bool?
    var last_message: MessageJSON?

    init(_ room: Room, summary: RoomSummary? = nil, signer: URLSigner? = nil) {
        id = room.id
        name = room.name
        is_private = room.isPrivate
        created_by = room.createdBy
        created_at = Timestamp.string(room.createdAt)
        member_count = summary?.memberCount
        unread_count = summary?.unreadCount
        is_member = summary?.isMember
        last_message = summary?.lastMessage.map { MessageJSON($0, signer: signer) }
    }
}

struct PostMessageBody: Decodable {
    var room_id: Int64
    var content: String?
    /// The seed's clients send text as `content` or `message`.
    var message: String?
    var client_id: String?
    var attachment: JSONValue?

    var text: String { content ?? message ?? "" }
}

/// The users who reacted to a message with one emoji, as the seed app's `ReactionSummary`.
struct ReactionSummaryJSON: Codable, Equatable, Sendable {
    var reaction_type: String
    var count: Int
    var users: [String]

    init(_ group: ReactionGroup) {
        reaction_type = group.type
        count = group.usernames.count
        users = group.usernames
    }
}

/// A chat message, as REST returns it and as the WebSocket `message` frame carries it: the
/// seed's `WebSocketMessage` and `ServerMessage` keys plus `id`, `client_id` and `sender_id`.
/// `id` and `message_id` are the same number (the seed app reads `message_id`).
struct MessageJSON: Codable, Equatable, ResponseEncodable {
    var type = "message"
    var id: Int64
    var message_id: Int64
    var room_id: Int64
    var sender: String
    var sender_id: Int64
    var content: String
    var message: String
    /// Whole seconds, `2026-12-03T07:55:28Z`: the seed app's formatter rejects fractions.
    var timestamp: String
    /// The same instant with milliseconds.
    var created_at: String
    var attachment: JSONValue?
    var message_type: String
    var file_url: String?
    var file_name: String?
    var file_size: Int?
    var mime_type: String?
    var client_id: String?
    var reactions: [ReactionSummaryJSON]
    /// The reader's own reaction; null in frames, which every member shares.
    var user_reaction: String?

    /// - Parameters:
    ///   - signer: signs the attachment's `url` and `thumbnailUrl`, so that clients that load
    ///     them without headers (`AsyncImage`) can.
    ///   - reactions: the message's reactions; `reader` names who reads it, for `user_reaction`.
    init(_ stored: StoredMessage, signer: URLSigner? = nil, reactions: [ReactionGroup] = [], reader: String? = nil) {
        id = stored.id
        message_id = stored.id
        room_id = stored.roomId
        sender = stored.senderName
        sender_id = stored.senderId
        content = stored.content
        message = stored.content
        timestamp = Timestamp.string(stored.createdAt)
        created_at = Timestamp.precise(stored.createdAt)
        client_id = stored.clientId
        var attachment = stored.attachmentJSON.flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
        if case .object(var fields) = attachment {
            if let signer, let fileId = stored.fileId {
                fields["url"] = .string(signer.sign("/api/files/\(fileId)", fileId: fileId, variant: "original"))
                if fields["thumbnailUrl"]?.string != nil {
                    fields["thumbnailUrl"] = .string(signer.sign("/api/files/\(fileId)/thumbnail", fileId: fileId, variant: "thumbnail"))
                }
            }
            // The article's model reads `mimeType`, the app's `mime_type`.
            fields["mime_type"] = fields["mimeType"] ?? .null
            attachment = .object(fields)
        }
        self.attachment = attachment
        message_type = Self.messageType(attachmentType: attachment?["type"]?.string, hasText: !stored.content.isEmpty)
        file_url = attachment?["url"]?.string
        file_name = attachment?["filename"]?.string
        file_size = attachment?["size"]?.int
        mime_type = attachment?["mimeType"]?.string
        self.reactions = reactions.map(ReactionSummaryJSON.init)
        user_reaction = reader.flatMap { name in reactions.first { $0.usernames.contains(name) }?.type }
    }

    /// `text`, the attachment's type, or `text_with_<type>` for a captioned attachment (a
    /// captioned `file` is `text_with_document`, one of the seed app's nine types).
    static func messageType(attachmentType: String?, hasText: Bool) -> String {
        guard let attachmentType else { return "text" }
        guard hasText else { return attachmentType }
        return "text_with_" + (attachmentType == "file" ? "document" : attachmentType)
    }

    // Absent values are written as null, like the seed's server did.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type, forKey: .type)
        try c.encode(id, forKey: .id)
        try c.encode(message_id, forKey: .message_id)
        try c.encode(room_id, forKey: .room_id)
        try c.encode(sender, forKey: .sender)
        try c.encode(sender_id, forKey: .sender_id)
        try c.encode(content, forKey: .content)
        try c.encode(message, forKey: .message)
        try c.encode(timestamp, forKey: .timestamp)
        try c.encode(created_at, forKey: .created_at)
        try c.encode(attachment, forKey: .attachment)
        try c.encode(message_type, forKey: .message_type)
        try c.encode(file_url, forKey: .file_url)
        try c.encode(file_name, forKey: .file_name)
        try c.encode(file_size, forKey: .file_size)
        try c.encode(mime_type, forKey: .mime_type)
        try c.encode(client_id, forKey: .client_id)
        try c.encode(reactions, forKey: .reactions)
        try c.encode(user_reaction, forKey: .user_reaction)
    }
}

enum Timestamp {
    /// RFC 3339 in whole seconds, UTC (`2026-12-03T07:55:28Z`): what the seed app parses.
    static func string(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false))
    }

    /// ISO 8601 with milliseconds, UTC.
    static func precise(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}

/// Any JSON value, for attachments passed through verbatim.
enum JSONValue: Codable, Equatable, Sendable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): if n == n.rounded(), abs(n) < 1e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var string: String? { if case .string(let s) = self { s } else { nil } }
    var int: Int? { if case .number(let n) = self { Int(exactly: n.rounded()) } else { nil } }
}
