import Foundation
import MediagateWire

/// An account, without its password hash.
package struct User: Sendable, Codable, Equatable {
    package var id: Int64
    package var username: String

    package init(id: Int64, username: String) {
        self.id = id
        self.username = username
    }
}

package struct Room: Sendable, Codable, Equatable {
    package var id: Int64
    package var name: String
    package var isPrivate: Bool
    package var createdBy: Int64
    package var createdAt: Date

    package init(id: Int64, name: String, isPrivate: Bool, createdBy: Int64, createdAt: Date) {
        self.id = id
        self.name = name
        self.isPrivate = isPrivate
        self.createdBy = createdBy
        self.createdAt = createdAt
    }
}

/// A stored chat message.
package struct StoredMessage: Sendable, Equatable {
    package var id: Int64
    package var roomId: Int64
    package var senderId: Int64
    package var senderName: String
    package var content: String
    package var clientId: String?
    /// The server's own record of the attached file, as it was when the message was posted.
    package var attachment: Attachment?
    /// The stored file the attachment names.
    package var fileId: String?
    package var createdAt: Date

    package init(id: Int64, roomId: Int64, senderId: Int64, senderName: String, content: String, clientId: String?,
                 attachment: Attachment?, fileId: String?, createdAt: Date) {
        self.id = id
        self.roomId = roomId
        self.senderId = senderId
        self.senderName = senderName
        self.content = content
        self.clientId = clientId
        self.attachment = attachment
        self.fileId = fileId
        self.createdAt = createdAt
    }
}

/// A room as one member sees it in their room list.
package struct RoomSummary: Sendable {
    package var room: Room
    /// False for a public room listed to someone not in it yet.
    package var isMember: Bool
    package var memberCount: Int
    package var unreadCount: Int
    package var lastMessage: StoredMessage?

    package init(room: Room, isMember: Bool, memberCount: Int, unreadCount: Int, lastMessage: StoredMessage?) {
        self.room = room
        self.isMember = isMember
        self.memberCount = memberCount
        self.unreadCount = unreadCount
        self.lastMessage = lastMessage
    }
}

/// One user's reaction to one message.
package struct StoredReaction: Sendable, Equatable {
    package var id: Int64
    package var messageId: Int64
    package var userId: Int64
    package var type: String
    package var createdAt: Date
    package var updatedAt: Date

    package init(id: Int64, messageId: Int64, userId: Int64, type: String, createdAt: Date, updatedAt: Date) {
        self.id = id
        self.messageId = messageId
        self.userId = userId
        self.type = type
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// The users who reacted to a message with one type.
package struct ReactionGroup: Sendable, Equatable {
    package var type: String
    package var usernames: [String]

    package init(type: String, usernames: [String]) {
        self.type = type
        self.usernames = usernames
    }
}

/// A resumable upload's state. `offset` counts only bytes that were durable in the
/// ``UploadStore`` when it was stored.
package struct UploadRecord: Sendable, Equatable {
    package var id: String
    package var userId: Int64
    /// nil while the length is deferred (creation-defer-length).
    package var length: Int64?
    package var offset: Int64
    /// The client's `Upload-Metadata` header, verbatim, echoed by HEAD.
    package var metadata: String?
    package var createdAt: Date
    package var expiresAt: Date
    package var completedAt: Date?
    /// The stored file, once the pipeline has processed the completed upload.
    package var fileId: String?
    /// Why a completed upload was not stored (``UploadRejection``); nil otherwise.
    package var rejection: String?
    /// What the upload store needs to find the stored offset's bytes (S3: the parts' ETags),
    /// stored with the offset so that both change together; nil for a store on disk.
    package var storeState: String?
    /// Where the bytes go once complete, for an upload that is another request's body made
    /// resumable (the IETF draft in front of an endpoint); nil for an upload the pipeline processes.
    package var handoff: UploadHandoff?

    package init(id: String, userId: Int64, length: Int64?, offset: Int64, metadata: String?, createdAt: Date, expiresAt: Date,
                 completedAt: Date? = nil, fileId: String? = nil, rejection: String? = nil, storeState: String? = nil,
                 handoff: UploadHandoff? = nil) {
        self.id = id
        self.userId = userId
        self.length = length
        self.offset = offset
        self.metadata = metadata
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.completedAt = completedAt
        self.fileId = fileId
        self.rejection = rejection
        self.storeState = storeState
        self.handoff = handoff
    }
}

/// The request an upload completes: the endpoint that receives the whole body and the headers
/// that describe it, as the client sent them when the upload began.
package struct UploadHandoff: Codable, Sendable, Equatable {
    /// The endpoint's name among those the resumable front serves (`upload-file`).
    package var target: String
    package var contentType: String?
    package var contentDisposition: String?
    /// The largest body the endpoint takes.
    package var maxBytes: Int64

    package init(target: String, contentType: String?, contentDisposition: String?, maxBytes: Int64) {
        self.target = target
        self.contentType = contentType
        self.contentDisposition = contentDisposition
        self.maxBytes = maxBytes
    }

    /// As stored in the upload's row.
    package var json: String {
        String(decoding: (try? JSONEncoder().encode(self)) ?? Data(), as: UTF8.self)
    }

    package init?(json: String?) {
        guard let json, let handoff = try? JSONDecoder().decode(Self.self, from: Data(json.utf8)) else { return nil }
        self = handoff
    }
}

/// What a creation came to.
package enum UploadCreation: Sendable {
    case created, overQuota, tooManyOpen
}

extension ReactionGroup {
    /// Reactions (oldest first) grouped per message, then by type in the order the types were
    /// first used.
    package static func grouping(_ reactions: [(messageId: Int64, type: String, username: String)]) -> [Int64: [ReactionGroup]] {
        var result: [Int64: [ReactionGroup]] = [:]
        for reaction in reactions {
            var groups = result[reaction.messageId, default: []]
            if let index = groups.firstIndex(where: { $0.type == reaction.type }) {
                groups[index].usernames.append(reaction.username)
            } else {
                groups.append(ReactionGroup(type: reaction.type, usernames: [reaction.username]))
            }
            result[reaction.messageId] = groups
        }
        return result
    }
}
