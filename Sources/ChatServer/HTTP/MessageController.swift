import Foundation
import Hummingbird
import HummingbirdCore
import MediagateCore
import MediagateWire

/// `/api/messages`: history pages and posting.
struct MessageController: Sendable {
    let access: RoomAccess
    let messages: any MessageRepository
    let reactions: any ReactionRepository
    let service: MessageService
    let maxPage: Int

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.get(use: history)
        routes.post(use: post)
        // The seed app's history: the newest messages, oldest first.
        routes.get(":roomId") { request, context in
            try await chronological(request, context: context, defaultLimit: maxPage)
        }
        routes.get(":roomId/recent") { request, context in
            try await chronological(request, context: context, defaultLimit: 50)
        }
        return routes
    }

    /// `GET /api/messages?room_id=&before=&limit=`: newest first. The next page is
    /// `before=<id of the last message returned>`; an empty page is the end.
    @Sendable func history(_ request: Request, context: AuthenticatedContext) async throws -> [MessageJSON] {
        let query = request.uri.queryParameters
        guard let roomId = query["room_id"].flatMap({ Int64(String($0)) }) else {
            throw APIError.badRequest("room_id is required and must be an integer")
        }
        let before: Int64? = try query["before"].map {
            guard let value = Int64(String($0)), value > 0 else { throw APIError.badRequest("before must be a positive message id") }
            return value
        }
        return try await page(roomId: roomId, before: before, limit: try limit(query, default: 50), reader: context.user)
    }

    /// `GET /api/messages/{roomId}[/recent]?limit=`: the newest `limit` messages (at most
    /// `maxHistoryPage`), oldest first, as the seed app sorts and shows them.
    @Sendable func chronological(_ request: Request, context: AuthenticatedContext, defaultLimit: Int) async throws -> [MessageJSON] {
        guard let roomId = context.parameters.get("roomId", as: Int64.self) else { throw APIError.notFound("no such room") }
        let limit = try limit(request.uri.queryParameters, default: defaultLimit)
        return try await page(roomId: roomId, before: nil, limit: limit, reader: context.user).reversed()
    }

    /// A page of history, newest first, with reactions. Reading a public room joins it.
    private func page(roomId: Int64, before: Int64?, limit: Int, reader: User) async throws -> [MessageJSON] {
        _ = try await access.enter(roomId: roomId, userId: reader.id)
        let stored = try await messages.history(roomId: roomId, before: before, limit: limit)
        let groups = try await reactions.summaries(messageIds: stored.map(\.id))
        return stored.map { MessageJSON($0, signer: service.signer, reactions: groups[$0.id] ?? [], reader: reader.username) }
    }

    private func limit(_ query: FlatDictionary<Substring, Substring>, default value: Int) throws -> Int {
        try query["limit"].map {
            guard let value = Int(String($0)), value > 0 else { throw APIError.badRequest("limit must be a positive integer") }
            return min(value, maxPage)
        } ?? min(value, maxPage)
    }

    /// `POST /api/messages`: 201 with the stored message, or 200 with the one already stored
    /// under the same `client_id` (an offline queue resending).
    @Sendable func post(_ request: Request, context: AuthenticatedContext) async throws -> EditedResponse<MessageJSON> {
        let body = try await request.decode(as: PostMessageBody.self, context: context)
        let posted = try await service.post(from: context.user, roomId: body.room_id, text: body.text,
                                            clientId: body.client_id, attachment: body.attachment)
        return EditedResponse(status: posted.isNew ? .created : .ok, response: posted.message)
    }
}
