import Foundation

/// A chat message, as REST returns it and as the WebSocket `message` frame carries it: the
/// seed's `WebSocketMessage` and `ServerMessage` keys plus `id`, `client_id` and `sender_id`.
/// `id` and `message_id` are the same number (the seed app reads `message_id`).
public struct MessageJSON: Codable, Equatable, Sendable {
    public var type = "message"
    public var id: Int64
    public var message_id: Int64
    public var room_id: Int64
    public var sender: String
    public var sender_id: Int64
    public var content: String
    public var message: String
    /// Whole seconds, `2026-12-03T07:55:28Z`: the seed app's formatter rejects fractions.
    public var timestamp: String
    /// The same instant with milliseconds.
    public var created_at: String
    public var attachment: MessageAttachment?
    public var message_type: String
    public var file_url: String?
    public var file_name: String?
    public var file_size: Int?
    public var mime_type: String?
    public var client_id: String?
    public var reactions: [ReactionSummaryJSON]
    /// The reader's own reaction; null in frames, which every member shares.
    public var user_reaction: String?

    public init(id: Int64, roomId: Int64, sender: String, senderId: Int64, content: String, createdAt: Date,
                attachment: Attachment?, clientId: String?, reactions: [ReactionSummaryJSON], userReaction: String?) {
        self.id = id
        message_id = id
        room_id = roomId
        self.sender = sender
        sender_id = senderId
        self.content = content
        message = content
        timestamp = Timestamp.string(createdAt)
        created_at = Timestamp.precise(createdAt)
        self.attachment = attachment.map(MessageAttachment.init)
        message_type = Self.messageType(attachmentType: attachment?.type.rawValue, hasText: !content.isEmpty)
        file_url = attachment?.url
        file_name = attachment?.filename
        file_size = attachment?.size
        mime_type = attachment?.mimeType
        client_id = clientId
        self.reactions = reactions
        user_reaction = userReaction
    }

    /// `text`, the attachment's type, or `text_with_<type>` for a captioned attachment (a
    /// captioned `file` is `text_with_document`, one of the seed app's nine types).
    public static func messageType(attachmentType: String?, hasText: Bool) -> String {
        guard let attachmentType else { return "text" }
        guard hasText else { return attachmentType }
        return "text_with_" + (attachmentType == "file" ? "document" : attachmentType)
    }

    // Absent values are written as null, like the seed's server did.
    public func encode(to encoder: any Encoder) throws {
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

/// A message's attachment on the wire: the ``Attachment`` with its URLs as the reader may load
/// them (signed), plus `mime_type`, which the seed app reads where the article's model reads
/// `mimeType`.
public struct MessageAttachment: Codable, Equatable, Sendable {
    public var attachment: Attachment

    public init(_ attachment: Attachment) { self.attachment = attachment }

    private enum ExtraKeys: String, CodingKey { case mime_type }

    public init(from decoder: any Decoder) throws {
        attachment = try Attachment(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        try attachment.encode(to: encoder)
        var extra = encoder.container(keyedBy: ExtraKeys.self)
        try extra.encode(attachment.mimeType, forKey: .mime_type)
    }
}

/// The users who reacted to a message with one emoji, as the seed app's `ReactionSummary`.
public struct ReactionSummaryJSON: Codable, Equatable, Sendable {
    public var reaction_type: String
    public var count: Int
    public var users: [String]

    public init(type: String, users: [String]) {
        reaction_type = type
        count = users.count
        self.users = users
    }
}

/// A user. `id` is a string: the seed app decodes it as one (its login fails on a number).
public struct UserJSON: Codable, Equatable, Sendable {
    public var id: String
    public var username: String

    public init(id: Int64, username: String) {
        self.id = String(id)
        self.username = username
    }
}

/// Every error body: `{"error": {"code": "...", "message": "..."}}`.
public struct ErrorBody: Codable, Equatable, Sendable {
    public struct Detail: Codable, Equatable, Sendable {
        public var code: String
        public var message: String
    }

    public var error: Detail

    public init(code: String, message: String) { error = Detail(code: code, message: message) }
}

/// `GET /api/uploads/{id}`: what a completed upload became. `status` is `processing` (202) or
/// `ready` (200, with the file and its attachment).
public struct UploadStatusJSON: Codable, Equatable, Sendable {
    public static let processing = "processing"
    public static let ready = "ready"

    public var status: String
    public var file_id: String?
    public var attachment: Attachment?
    /// Set when the pipeline could not fully analyse the bytes (they are stored all the same).
    public var error: String?

    public init(status: String, fileId: String? = nil, attachment: Attachment? = nil, error: String? = nil) {
        self.status = status
        file_id = fileId
        self.attachment = attachment
        self.error = error
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(status, forKey: .status)
        if status == Self.ready {
            try c.encode(file_id, forKey: .file_id)
            try c.encode(attachment, forKey: .attachment)
            try c.encode(error, forKey: .error)
        }
    }
}
