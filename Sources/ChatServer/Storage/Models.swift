import Foundation

/// An account, without its password hash.
public struct User: Sendable, Codable, Equatable {
    public var id: Int64
    public var username: String
}

public struct Room: Sendable, Codable, Equatable {
    public var id: Int64
    public var name: String
    public var isPrivate: Bool
    public var createdBy: Int64
    public var createdAt: Date
}

/// A stored chat message.
public struct StoredMessage: Sendable, Equatable {
    public var id: Int64
    public var roomId: Int64
    public var senderId: Int64
    public var senderName: String
    public var content: String
    public var clientId: String?
    /// The attachment as JSON, kept verbatim from when it was validated.
    public var attachmentJSON: String?
    /// The stored file the attachment names.
    public var fileId: String?
    public var createdAt: Date
}

/// A room as one member sees it in their room list.
public struct RoomSummary: Sendable {
    public var room: Room
    /// False for a public room listed to someone not in it yet.
    public var isMember: Bool
    public var memberCount: Int
    public var unreadCount: Int
    public var lastMessage: StoredMessage?
}

/// One user's reaction to one message.
public struct StoredReaction: Sendable, Equatable {
    public var id: Int64
    public var messageId: Int64
    public var userId: Int64
    public var type: String
    public var createdAt: Date
    public var updatedAt: Date
}

/// The users who reacted to a message with one type.
public struct ReactionGroup: Sendable, Equatable {
    public var type: String
    public var usernames: [String]
}
