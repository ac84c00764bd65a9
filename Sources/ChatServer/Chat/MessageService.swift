import Foundation

/// Posting a message, the same from REST and from a WebSocket: check, store, fan out.
struct MessageService: Sendable {
    let rooms: any RoomRepository
    let messages: any MessageRepository
    let hub: ChatHub
    let files: FileStore
    let signer: URLSigner
    let maxMessageLength: Int
    /// Messages per sender, whichever way they arrive (REST or a socket).
    let rateLimiter: RateLimiter

    struct Posted {
        var message: MessageJSON
        /// The encoded `message` frame.
        var frame: String
        /// False when a resend with a known `client_id` returned the stored message.
        var isNew: Bool
    }

    /// - Throws: `APIError` 429 past the sender's message rate, 404 for a room the sender is
    ///   not in, 422 for empty or over-long text, 422 for an attachment that names no stored file.
    func post(from sender: User, roomId: Int64, text: String, clientId: String?, attachment: JSONValue?,
              excludingConnection: UUID? = nil) async throws -> Posted {
        try rateLimiter.check(String(sender.id), "messages")
        guard try await rooms.isMember(roomId: roomId, userId: sender.id) else { throw APIError.notFound("no such room") }
        if let clientId, clientId.isEmpty || clientId.count > 128 {
            throw APIError.unprocessable("client_id must be 1-128 characters")
        }
        guard text.count <= maxMessageLength else {
            throw APIError.tooLarge("messages are at most \(maxMessageLength) characters")
        }
        var file: StoredFile?
        if let attachment, attachment != .null {
            file = try await resolve(attachment, sender: sender, roomId: roomId)
        }
        guard file != nil || !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw APIError.unprocessable("a message needs text or an attachment")
        }
        // The stored attachment is the server's own record of the file, never the client's claims.
        let attachmentJSON = try file.map { String(decoding: try JSONEncoder().encode($0.attachment), as: UTF8.self) }
        let (stored, isNew) = try await messages.insert(roomId: roomId, sender: sender, content: text, clientId: clientId,
                                                        attachmentJSON: attachmentJSON, fileId: file?.id, now: Date())
        let json = MessageJSON(stored, signer: signer)
        let frame = String(decoding: try JSONEncoder().encode(json), as: UTF8.self)
        if isNew {
            await hub.stopTyping(roomId: roomId, user: sender)
            let reached = await hub.broadcast(frame, roomId: roomId).subtracting([sender.id])
            if !reached.isEmpty {
                // One receipt per message, naming who has it (a room of a thousand must not
                // answer every message with a thousand frames).
                let members = try await rooms.members(roomId: roomId)
                let names = members.filter { reached.contains($0.id) }.map(\.username).prefix(100)
                await hub.send(ChatFrames.delivered(messageId: stored.id, roomId: roomId, to: Array(names), count: reached.count),
                               roomId: roomId, userId: sender.id)
            }
        }
        return Posted(message: json, frame: frame, isNew: isNew)
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
        throw APIError.unprocessable("the attachment does not name a file you uploaded or can see")
    }
}
