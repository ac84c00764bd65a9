import Foundation
import MediagateWire
import Metrics

/// Posting a message, the same from REST and from a WebSocket: check, store, fan out.
package struct MessageService: Sendable {
    package let rooms: any RoomRepository
    package let messages: any MessageRepository
    package let broker: any ChatBroker
    /// This node's hub: a message ends its sender's typing state, kept where their socket is.
    package let hub: ChatHub
    package let files: FileStore
    package let signer: URLSigner
    package let maxMessageLength: Int
    /// Messages per sender, whichever way they arrive (REST or a socket).
    package let rateLimiter: RateLimiter

    package init(rooms: any RoomRepository, messages: any MessageRepository, broker: any ChatBroker, hub: ChatHub, files: FileStore,
                 signer: URLSigner, maxMessageLength: Int, rateLimiter: RateLimiter) {
        self.rooms = rooms
        self.messages = messages
        self.broker = broker
        self.hub = hub
        self.files = files
        self.signer = signer
        self.maxMessageLength = maxMessageLength
        self.rateLimiter = rateLimiter
    }

    package struct Posted: Sendable {
        package var message: MessageJSON
        /// False when a resend with a known `client_id` returned the stored message.
        package var isNew: Bool
    }

    /// - Throws: `DomainError`: rate limited past the sender's message rate, not found for a
    ///   room the sender is not in, invalid for empty text or an attachment that names no
    ///   stored file, too large for over-long text.
    package func post(from sender: User, roomId: Int64, text: String, clientId: String?, attachment: JSONValue?) async throws -> Posted {
        try rateLimiter.check(String(sender.id), "messages")
        guard try await rooms.isMember(roomId: roomId, userId: sender.id) else { throw DomainError.notFound("no such room") }
        if let clientId, clientId.isEmpty || clientId.count > 128 {
            throw DomainError.invalid("client_id must be 1-128 characters")
        }
        guard text.count <= maxMessageLength else {
            throw DomainError.tooLarge("messages are at most \(maxMessageLength) characters")
        }
        var file: StoredFile?
        if let attachment, attachment != .null {
            file = try await resolve(attachment, sender: sender, roomId: roomId)
        }
        guard file != nil || !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw DomainError.invalid("a message needs text or an attachment")
        }
        // The stored attachment is the server's own record of the file, never the client's claims.
        let (stored, isNew) = try await messages.insert(roomId: roomId, sender: sender, content: text, clientId: clientId,
                                                        attachment: file?.attachment, fileId: file?.id, now: Date())
        let json = MessageJSON(stored, signer: signer)
        if isNew {
            await hub.stopTyping(roomId: roomId, user: sender)
            let frame = String(decoding: try JSONEncoder().encode(json), as: UTF8.self)
            await broker.publish(.message(roomId: roomId, messageId: stored.id, senderId: sender.id, frame: frame))
            if broker is InProcessChatBroker { FanoutLag.record(since: stored.createdAt) }
        }
        return Posted(message: json, isNew: isNew)
    }

    /// The stored file an attachment names, by `file_id`, by `url` (`…/api/files/{id or name}…`,
    /// absolute or relative, any query) or by `filename` (the upload's capability name), if the
    /// sender uploaded it or it was already posted in a room they are in.
    private func resolve(_ attachment: JSONValue, sender: User, roomId: Int64) async throws -> StoredFile {
        let fromURL = attachment["url"]?.string.flatMap { url -> String? in
            guard let range = url.range(of: "/api/files/") else { return nil }
            return url[range.upperBound...].split(whereSeparator: { $0 == "/" || $0 == "?" || $0 == "#" }).first.map(String.init)
        }
        for name in [attachment["file_id"]?.string, fromURL, attachment["filename"]?.string].compactMap({ $0 }) {
            if let file = try await files.file(named: name), try await files.canRead(fileId: file.id, userId: sender.id) {
                return file
            }
        }
        throw DomainError.invalid("the attachment does not name a file you uploaded or can see")
    }
}
