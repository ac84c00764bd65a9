import Foundation
import MediagateWire

// The seed article's iOS app (SocketChat) and the article's printed code, as they decode our
// answers: written here from `shared/seed/app-contract.md` (part A4/A5) and the article, key by
// key and type by type, decoded with a plain `JSONDecoder()` and no strategies, as the app does.
// A key the app requires is non-optional here; a key it reads as optional is optional, and a
// present optional key must still have the right type.

/// `AuthResponse` (sign-up and login).
struct AuthResponse: Decodable {
    let access_token: String
    let refresh_token: String?
    let token_type: String
    let user: AppUser?
}

/// `User`: its `id` is a String in the app.
struct AppUser: Decodable {
    let id: String
    let username: String
    let token: String?
}

/// `RefreshTokenResponse`.
struct RefreshTokenResponse: Decodable {
    let access_token: String
    let refresh_token: String?
    let token_type: String
}

/// `ChatRoom`: `id` is a String decoded from an Int or a String.
struct ChatRoom: Decodable {
    let id: String
    let name: String
    let created_at: String?
    let last_message: LastMessage?
    let unread_count: Int?

    enum CodingKeys: String, CodingKey { case id, name, created_at, last_message, unread_count }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let number = try? c.decode(Int.self, forKey: .id) { id = String(number) } else { id = try c.decode(String.self, forKey: .id) }
        name = try c.decode(String.self, forKey: .name)
        created_at = try c.decodeIfPresent(String.self, forKey: .created_at)
        last_message = try c.decodeIfPresent(LastMessage.self, forKey: .last_message)
        unread_count = try c.decodeIfPresent(Int.self, forKey: .unread_count)
    }
}

struct LastMessage: Decodable {
    let message_id: Int
    let sender: String
    let message: String
    let message_type: String
    let timestamp: String
}

/// One history item (`GET /api/messages/{roomId}`).
struct ServerMessage: Decodable {
    let message_id: Int
    let room_id: Int
    let sender: String
    let message: String
    let timestamp: String
    let message_type: String?
    let file_url: String?
    let file_name: String?
    let mime_type: String?
    let user_reaction: String?
    let encrypted_content: String?
    let encryption_version: String?
    let file_size: Int?
    let reactions: [ReactionSummary]?
    let is_encrypted: Bool?
}

/// `UploadResponse` (the app); the article reads only `filename`, through JSONSerialization.
struct UploadResponse: Decodable {
    let file_url: String
    let filename: String
    let file_size: Int
    let mime_type: String
    let message: String
}

/// The six emoji; any other value fails the whole response or frame in the app.
enum ReactionType: String, Decodable, CaseIterable {
    case thumbsUp = "\u{1F44D}", heart = "\u{2764}\u{FE0F}", laugh = "\u{1F602}"
    case wow = "\u{1F62E}", sad = "\u{1F622}", angry = "\u{1F621}"
}

struct ReactionSummary: Decodable {
    let reaction_type: ReactionType
    let count: Int
    let users: [String]
}

struct ReactionResponse: Decodable {
    let success: Bool
    let message: String
    let reaction: MessageReaction?
    let reaction_summary: [ReactionSummary]?
}

struct MessageReaction: Decodable {
    let id: Int
    let message_id: Int
    let user_id: Int
    let reaction_type: ReactionType
    let created_at: String
    let updated_at: String
}

/// `reaction_added` / `reaction_removed` frames.
struct ReactionEvent: Decodable {
    let type: String
    let room_id: Int
    let message_id: Int
    let sender: String
    let reaction_type: ReactionType
    let reaction_summary: [ReactionSummary]
    let timestamp: String
}

/// The first pass over every frame (`WebSocketMessage`).
struct WebSocketMessage: Decodable {
    struct Attachment: Decodable {
        let type: String?
        let filename: String?
        let url: String?
        let mime_type: String?
        let size: Int?
    }
    let type: String
    let room_id: Int?
    let message_id: Int?
    let file_size: Int?
    let sender: String?
    let content: String?
    let message: String?
    let timestamp: String?
    let message_type: String?
    let file_url: String?
    let file_name: String?
    let mime_type: String?
    let attachment: Attachment?
}

/// The second pass (`WebSocketConnectionMessage`): `type: "connected"` marks the socket live.
struct WebSocketConnectionMessage: Decodable {
    let type: String
    let message: String
    let room_id: Int?
    let room_name: String?
    let timestamp: String?
}

/// The printed article's `Attachment` (camelCase `mimeType`, an enum type).
struct ArticleAttachment: Decodable {
    enum AttachmentType: String, Decodable { case image, video, audio, document, file }
    let type: AttachmentType
    let filename: String
    let url: String?
    let size: Int?
    let mimeType: String?
    let thumbnailUrl: String?
    let duration: Double?
    let width: Int?
    let height: Int?
}

/// The app's two timestamp formats (ICU, UTC, POSIX locale).
enum AppDates {
    static func formatter(_ format: String) -> DateFormatter {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = format
        return formatter
    }

    /// History timestamps: unparsable ones become "now" in the app.
    static func message(_ text: String) -> Date? { formatter("yyyy-MM-dd'T'HH:mm:ss'Z'").date(from: text) }
}
