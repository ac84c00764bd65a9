import Foundation
import MediagateWire

extension MessageJSON {
    /// The message as its readers see it.
    /// - Parameters:
    ///   - signer: signs the attachment's `url` and `thumbnailUrl`, so that clients that load
    ///     them without headers (`AsyncImage`) can.
    ///   - reactions: the message's reactions; `reader` names who reads it, for `user_reaction`.
    package init(_ stored: StoredMessage, signer: URLSigner? = nil, reactions: [ReactionGroup] = [], reader: String? = nil) {
        var attachment = stored.attachment
        if let signer, let fileId = stored.fileId, attachment != nil {
            attachment?.url = signer.sign(APIPath.file(fileId), fileId: fileId, variant: "original")
            if attachment?.thumbnailUrl != nil {
                attachment?.thumbnailUrl = signer.sign(APIPath.thumbnail(fileId), fileId: fileId, variant: "thumbnail")
            }
        }
        self.init(id: stored.id, roomId: stored.roomId, sender: stored.senderName, senderId: stored.senderId, content: stored.content,
                  createdAt: stored.createdAt, attachment: attachment, clientId: stored.clientId,
                  reactions: reactions.map(ReactionSummaryJSON.init(_:)),
                  userReaction: reader.flatMap { name in reactions.first { $0.usernames.contains(name) }?.type })
    }
}

extension ReactionSummaryJSON {
    package init(_ group: ReactionGroup) {
        self.init(type: group.type, users: group.usernames)
    }
}

extension UserJSON {
    package init(_ user: User) {
        self.init(id: user.id, username: user.username)
    }
}
