import Foundation
import Hummingbird
import MediagateCore
import MediagateWire

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


extension MessageJSON: ResponseEncodable {}
extension UserJSON: ResponseEncodable {}
