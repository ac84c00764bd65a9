import Foundation
import MediagateWire
import Synchronization

/// Reactions as the seed app defines them: one per user and message, one of six emoji; a
/// change is broadcast to the whole room (sender included) with the message's full summary.
package struct ReactionService: Sendable {
    package let rooms: any RoomRepository
    package let messages: any MessageRepository
    package let reactions: any ReactionRepository
    package let broker: any ChatBroker
    /// What each user just did over REST, so that the seed app's socket echo of it is known.
    package let restActions = RecentReactionActions()

    package init(rooms: any RoomRepository, messages: any MessageRepository, reactions: any ReactionRepository, broker: any ChatBroker) {
        self.rooms = rooms
        self.messages = messages
        self.reactions = reactions
        self.broker = broker
    }

    /// The emoji the seed app decodes; any other value would fail its whole frame or response.
    package static let allowedTypes: [String] = ["\u{1F44D}", "\u{2764}\u{FE0F}", "\u{1F602}", "\u{1F62E}", "\u{1F622}", "\u{1F621}"]

    package struct Outcome {
        /// The reaction set, or the one removed.
        package var reaction: StoredReaction
        package var summary: [ReactionGroup]
        package var changed: Bool
    }

    /// Sets `user`'s reaction on a message in a room they are in, replacing another.
    /// - Throws: `DomainError` 422 for another emoji, 404 for a message the user cannot see.
    package func add(_ type: String, to messageId: Int64, by user: User, overREST: Bool = true) async throws -> Outcome {
        guard Self.allowedTypes.contains(type) else {
            throw DomainError.invalid("reaction_type is one of \(Self.allowedTypes.joined(separator: " "))")
        }
        let message = try await visibleMessage(messageId, to: user)
        if overREST { restActions.record(user: user.id, message: messageId, action: type) }
        let (reaction, changed) = try await reactions.set(messageId: messageId, userId: user.id, type: type, now: Date())
        return try await finish(reaction, in: message, by: user, changed: changed, event: "reaction_added")
    }

    /// Removes `user`'s reaction. nil when they had none.
    /// - Throws: `DomainError` 404 for a message the user cannot see.
    package func remove(from messageId: Int64, by user: User, overREST: Bool = true) async throws -> Outcome? {
        let message = try await visibleMessage(messageId, to: user)
        if overREST { restActions.record(user: user.id, message: messageId, action: RecentReactionActions.removal) }
        guard let removed = try await reactions.remove(messageId: messageId, userId: user.id) else { return nil }
        return try await finish(removed, in: message, by: user, changed: true, event: "reaction_removed")
    }

    /// A socket's `reaction` frame (`type` nil: remove). The seed app sends one after each REST
    /// call succeeded, as an echo of it; applied when it arrives, a late echo of a reaction the
    /// user has since changed over REST would put the old one back. So a frame repeating what
    /// the same user did over REST on that message in the last few seconds changes nothing; a
    /// reaction made over the socket alone is applied.
    package func applySocketFrame(adding type: String?, to messageId: Int64, by user: User) async throws {
        if restActions.contains(user: user.id, message: messageId, action: type ?? RecentReactionActions.removal) { return }
        if let type {
            _ = try await add(type, to: messageId, by: user, overREST: false)
        } else {
            _ = try await remove(from: messageId, by: user, overREST: false)
        }
    }

    private func visibleMessage(_ id: Int64, to user: User) async throws -> StoredMessage {
        guard id > 0, let message = try await messages.message(id: id),
              try await rooms.isMember(roomId: message.roomId, userId: user.id) else {
            throw DomainError.notFound("no such message")
        }
        return message
    }

    private func finish(_ reaction: StoredReaction, in message: StoredMessage, by user: User, changed: Bool,
                        event: String) async throws -> Outcome {
        let summary = try await reactions.summaries(messageIds: [message.id])[message.id] ?? []
        if changed {
            let frame = ReactionEventJSON(type: event, room_id: message.roomId, message_id: message.id, sender: user.username,
                                          reaction_type: reaction.type, reaction_summary: summary.map(ReactionSummaryJSON.init(_:)),
                                          timestamp: Timestamp.string(Date()))
            await broker.publish(.frame(roomId: message.roomId, frame: String(decoding: try JSONEncoder().encode(frame), as: UTF8.self),
                                        except: nil))
        }
        return Outcome(reaction: reaction, summary: summary, changed: changed)
    }
}

/// The `reaction_added` / `reaction_removed` frame: the seed app's `ReactionEvent`.
package struct ReactionEventJSON: Codable {
    package var type: String
    package var room_id: Int64
    package var message_id: Int64
    package var sender: String
    package var reaction_type: String
    package var reaction_summary: [ReactionSummaryJSON]
    package var timestamp: String
}

/// Reaction changes made over REST in the last `window`, by user and message: what a socket
/// frame from the seed app may be echoing. Bounded by time: entries older than the window are
/// dropped as new ones come.
package final class RecentReactionActions: Sendable {
    /// The action recorded for a removal.
    package static let removal = "remove"
    package static let window: Duration = .seconds(10)

    private struct Action {
        package var key: String
        package var action: String
        package var at: ContinuousClock.Instant
    }

    private let actions = Mutex([Action]())

    package func record(user: Int64, message: Int64, action: String, now: ContinuousClock.Instant = .now) {
        actions.withLock { actions in
            actions.removeAll { now - $0.at > Self.window }
            actions.append(Action(key: "\(user):\(message)", action: action, at: now))
        }
    }

    package func contains(user: Int64, message: Int64, action: String, now: ContinuousClock.Instant = .now) -> Bool {
        let key = "\(user):\(message)"
        return actions.withLock { actions in
            actions.contains { $0.key == key && $0.action == action && now - $0.at <= Self.window }
        }
    }
}
