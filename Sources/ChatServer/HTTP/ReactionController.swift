import Foundation
import Hummingbird
import MediagateCore
import MediagateWire

/// `/api/reactions`: the seed app's reaction calls. Both answer 200 with its `ReactionResponse`.
struct ReactionController: Sendable {
    let service: ReactionService

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("add", use: add)
        routes.delete("remove/:messageId", use: remove)
        return routes
    }

    struct AddBody: Decodable {
        var message_id: Int64
        var reaction_type: String
    }

    @Sendable func add(_ request: Request, context: AuthenticatedContext) async throws -> ReactionResponseJSON {
        let body = try await request.decode(as: AddBody.self, context: context)
        let outcome = try await service.add(body.reaction_type, to: body.message_id, by: context.user)
        return ReactionResponseJSON(success: true, message: "Reaction added", reaction: ReactionJSON(outcome.reaction),
                                    reaction_summary: outcome.summary.map(ReactionSummaryJSON.init))
    }

    /// 404 when the user has no reaction on the message (as the seed's backend answers).
    @Sendable func remove(_ request: Request, context: AuthenticatedContext) async throws -> ReactionResponseJSON {
        guard let id = context.parameters.get("messageId", as: Int64.self) else { throw APIError.notFound("no such message") }
        guard let outcome = try await service.remove(from: id, by: context.user) else {
            throw APIError.notFound("you have no reaction on this message")
        }
        return ReactionResponseJSON(success: true, message: "Reaction removed", reaction: nil,
                                    reaction_summary: outcome.summary.map(ReactionSummaryJSON.init))
    }
}

/// The seed app's `ReactionResponse`.
struct ReactionResponseJSON: ResponseEncodable {
    var success: Bool
    var message: String
    var reaction: ReactionJSON?
    var reaction_summary: [ReactionSummaryJSON]

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(success, forKey: .success)
        try c.encode(message, forKey: .message)
        try c.encode(reaction, forKey: .reaction) // null when removed
        try c.encode(reaction_summary, forKey: .reaction_summary)
    }

    enum CodingKeys: CodingKey { case success, message, reaction, reaction_summary }
}

/// The seed app's `MessageReaction`.
struct ReactionJSON: Encodable {
    var id: Int64
    var message_id: Int64
    var user_id: Int64
    var reaction_type: String
    var created_at: String
    var updated_at: String

    init(_ reaction: StoredReaction) {
        id = reaction.id
        message_id = reaction.messageId
        user_id = reaction.userId
        reaction_type = reaction.type
        created_at = Timestamp.string(reaction.createdAt)
        updated_at = Timestamp.string(reaction.updatedAt)
    }
}
