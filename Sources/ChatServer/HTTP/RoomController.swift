import Foundation
import Hummingbird

/// `/api/rooms`: the rooms I am in, creating, joining, leaving, members.
///
/// A room a user is not in answers 404, never 403, so that room ids reveal nothing.
struct RoomController: Sendable {
    let rooms: any RoomRepository
    let users: any UserRepository
    let hub: ChatHub
    let signer: URLSigner

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.get(use: list)
        routes.post(use: create)
        routes.get(":roomId", use: show)
        routes.post(":roomId/join", use: join)
        routes.post(":roomId/leave", use: leave)
        routes.get(":roomId/members", use: members)
        routes.post(":roomId/members", use: addMember)
        return routes
    }

    @Sendable func list(_ request: Request, context: AuthenticatedContext) async throws -> [RoomJSON] {
        try await rooms.summaries(userId: context.user.id).map { RoomJSON($0.room, summary: $0, signer: signer) }
    }

    @Sendable func create(_ request: Request, context: AuthenticatedContext) async throws -> EditedResponse<RoomJSON> {
        let body = try await request.decode(as: CreateRoomBody.self, context: context)
        let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...100).contains(name.count) else { throw APIError.unprocessable("room names are 1-100 characters") }
        var memberIds = [Int64]()
        for username in body.members ?? [] {
            guard let user = try await users.user(username: username) else {
                throw APIError.unprocessable("no user named \(username)")
            }
            memberIds.append(user.id)
        }
        let room = try await rooms.create(name: name, isPrivate: body.is_private ?? false, creator: context.user.id, members: memberIds)
        return EditedResponse(status: .created, response: RoomJSON(room))
    }

    @Sendable func show(_ request: Request, context: AuthenticatedContext) async throws -> RoomJSON {
        RoomJSON(try await memberRoom(context))
    }

    @Sendable func join(_ request: Request, context: AuthenticatedContext) async throws -> RoomJSON {
        let id = try context.parameters.require("roomId", as: Int64.self)
        guard let room = try await rooms.room(id: id) else { throw APIError.notFound("no such room") }
        if room.isPrivate, !(try await rooms.isMember(roomId: id, userId: context.user.id)) {
            throw APIError.notFound("no such room")
        }
        _ = try await rooms.addMember(roomId: id, userId: context.user.id)
        return RoomJSON(room)
    }

    @Sendable func leave(_ request: Request, context: AuthenticatedContext) async throws -> Response {
        let room = try await memberRoom(context)
        _ = try await rooms.removeMember(roomId: room.id, userId: context.user.id)
        await hub.disconnect(userId: context.user.id, roomId: room.id)
        return Response(status: .noContent)
    }

    @Sendable func members(_ request: Request, context: AuthenticatedContext) async throws -> [UserJSON] {
        let room = try await memberRoom(context)
        return try await rooms.members(roomId: room.id).map(UserJSON.init)
    }

    @Sendable func addMember(_ request: Request, context: AuthenticatedContext) async throws -> EditedResponse<UserJSON> {
        let room = try await memberRoom(context)
        let body = try await request.decode(as: AddMemberBody.self, context: context)
        guard let user = try await users.user(username: body.username) else { throw APIError.notFound("no user named \(body.username)") }
        let added = try await rooms.addMember(roomId: room.id, userId: user.id)
        return EditedResponse(status: added ? .created : .ok, response: UserJSON(user))
    }

    /// The room in the path, if the caller is a member; 404 otherwise.
    private func memberRoom(_ context: AuthenticatedContext) async throws -> Room {
        guard let id = context.parameters.get("roomId", as: Int64.self) else { throw APIError.notFound("no such room") }
        guard try await rooms.isMember(roomId: id, userId: context.user.id), let room = try await rooms.room(id: id) else {
            throw APIError.notFound("no such room")
        }
        return room
    }
}
