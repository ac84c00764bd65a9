import Foundation
import Hummingbird

/// `/api/messages`: history pages and posting.
struct MessageController: Sendable {
    let rooms: any RoomRepository
    let messages: any MessageRepository
    let service: MessageService
    let maxPage: Int

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.get(use: history)
        routes.post(use: post)
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
        let limit = try query["limit"].map {
            guard let value = Int(String($0)), value > 0 else { throw APIError.badRequest("limit must be a positive integer") }
            return min(value, maxPage)
        } ?? 50
        guard try await rooms.isMember(roomId: roomId, userId: context.user.id) else { throw APIError.notFound("no such room") }
        return try await messages.history(roomId: roomId, before: before, limit: limit).map { MessageJSON($0, signer: service.signer) }
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
