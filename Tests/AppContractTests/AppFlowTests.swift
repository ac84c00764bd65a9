import ChatServer
import Foundation
import MediagateWire
import HummingbirdTesting
import MediagateTestSupport
import Testing
@testable import MediagateCore

/// The seed app's flows, call by call (`shared/seed/app-contract.md`), against a live gateway on
/// 127.0.0.1, every answer decoded with the app's own model shapes.
// One at a time: the suite runs beside every other suite, and the start of a full run is when the
// machine is busiest.
@Suite("The seed app against a live gateway", .serialized)
struct AppFlowTests {
    static let password = "correct horse"

    static func configuration(_ adjust: (inout ChatConfiguration) -> Void = { _ in }) throws -> ChatConfiguration {
        var configuration = ChatConfiguration()
        configuration.dataDirectory = try Fixtures.temporaryDirectory("contract").path
        configuration.port = 0
        configuration.passwordHashCost = 4
        adjust(&configuration)
        return configuration
    }

    /// Sign-up as the app does it: `POST /api/auth/signup`, 200, `AuthResponse`.
    static func signUp(_ api: AppClient, _ name: String) async throws -> AuthResponse {
        let reply = try await api.call("POST", "/api/auth/signup", json: ["username": name, "password": password])
        #expect(reply.status == 200, "signup: \(reply.text)")
        return try reply.decode(AuthResponse.self)
    }

    @Test("sign up, log in, rooms, socket chat, a picture the app's way and the article's way, history, reactions, logout")
    func wholeFlow() async throws {
        let app = try await buildApplication(try Self.configuration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let api = AppClient(base: "http://127.0.0.1:\(port)")

            // Sign-up and login: 200, `user.id` a String, names matched exactly.
            let signedUp = try await Self.signUp(api, "Alice")
            #expect(signedUp.user?.username == "Alice")
            #expect(signedUp.user.flatMap { Int($0.id) } != nil)
            _ = try await Self.signUp(api, "bob")
            let wrongCase = try await api.call("POST", "/api/auth/login", json: ["username": "alice", "password": Self.password])
            #expect(wrongCase.status == 401)
            let aliceLogin = try await api.call("POST", "/api/auth/login", json: ["username": "Alice", "password": Self.password])
            #expect(aliceLogin.status == 200)
            let alice = try aliceLogin.decode(AuthResponse.self)
            let bob = try await api.call("POST", "/api/auth/login", json: ["username": "bob", "password": Self.password])
                .decode(AuthResponse.self)

            // Alice creates a room (200, `ChatRoom`); Bob, who has no join call, sees it.
            let created = try await api.call("POST", "/api/rooms", token: alice.access_token, json: ["name": "general"])
            #expect(created.status == 200)
            let room = try created.decode(ChatRoom.self)
            let roomNumber = try #require(Int(room.id))
            let bobsRooms = try await api.call("GET", "/api/rooms", token: bob.access_token).decode([ChatRoom].self)
            #expect(bobsRooms.contains { $0.id == room.id })

            // Room entry, as the app does it: mark-read with a JSON header and no body, history
            // (twice), and two socket upgrades back to back, the first closed "going away".
            let markRead = try await api.call("POST", "/api/rooms/\(room.id)/mark-read", token: bob.access_token,
                                              jsonHeaderWithoutBody: true)
            #expect(markRead.status == 200, "\(markRead.text)")
            for _ in 0..<2 {
                let empty = try await api.call("GET", "/api/messages/\(room.id)", token: bob.access_token)
                #expect(empty.status == 200)
                #expect(try empty.decode([ServerMessage].self).isEmpty)
            }
            let firstTry = try await AppSocket(port: port, roomId: room.id, token: bob.access_token)
            try await firstTry.close()
            let bobSocket = try await AppSocket(port: port, roomId: room.id, token: bob.access_token)
            let aliceSocket = try await AppSocket(port: port, roomId: room.id, token: alice.access_token)
            let welcome = try await bobSocket.next("connected", as: WebSocketConnectionMessage.self)
            #expect(welcome.room_id == roomNumber && welcome.room_name == "general")
            _ = try await aliceSocket.next("connected", as: WebSocketMessage.self)

            // Text in a binary frame: Bob gets it with a `message_id`, and so does Alice's echo
            // (how the app gives its own optimistic bubble a server id).
            try await aliceSocket.send(["type": "message", "room_id": roomNumber, "content": "hello bob", "sender": "Alice"])
            let hello = try await bobSocket.next("message", as: WebSocketMessage.self) { $0.content == "hello bob" }
            let helloId = try #require(hello.message_id)
            #expect(hello.sender == "Alice")
            #expect(hello.room_id == roomNumber)
            let echo = try await aliceSocket.next("message", as: WebSocketMessage.self) { $0.content == "hello bob" }
            #expect(echo.message_id == helloId)

            try await aliceSocket.send(["type": "typing_start", "room_id": roomNumber, "sender": "Alice"])
            #expect(try await bobSocket.next("typing_start", as: WebSocketMessage.self).sender == "Alice")
            try await aliceSocket.send(["type": "typing_stop", "room_id": roomNumber, "sender": "Alice"])
            #expect(try await bobSocket.next("typing_stop", as: WebSocketMessage.self).sender == "Alice")

            // A picture: the article's multipart upload, 200, the app's `UploadResponse`, and
            // the `filename` the article reads.
            let photo = try Data(contentsOf: URL(fileURLWithPath: try await Fixtures.locationFreeCopy(of: "photo-exif-orientation-6.jpg")))
            let uploaded = try await api.upload(photo, filename: "image_\(Int(Date().timeIntervalSince1970))_1a2b3c4d.jpg",
                                                mimeType: "image/jpeg", token: alice.access_token)
            #expect(uploaded.status == 200, "\(uploaded.text)")
            let upload = try uploaded.decode(UploadResponse.self)
            #expect(upload.file_size == photo.count)
            #expect(upload.mime_type == "image/jpeg")
            let articleName = try #require((try JSONSerialization.jsonObject(with: uploaded.data) as? [String: Any])?["filename"] as? String)
            #expect(articleName == upload.filename)
            #expect(articleName.hasSuffix(".jpg") && !articleName.contains("image_"), "a capability name, not the sent name")

            // The app's way: an attachment frame with the absolute `file_url`, no caption.
            let absolute = upload.file_url.hasPrefix("http") ? upload.file_url : api.base + upload.file_url
            try await aliceSocket.send([
                "type": "message", "room_id": roomNumber, "content": "", "sender": "Alice", "message_type": "image",
                "attachment": ["type": "image", "filename": upload.filename, "url": absolute, "size": upload.file_size,
                               "mime_type": upload.mime_type],
            ])
            let picture = try await bobSocket.next("message", as: WebSocketMessage.self) { $0.attachment != nil && $0.content == "" }
            #expect(picture.message_id != nil)
            #expect(picture.attachment?.mime_type == "image/jpeg")
            #expect(picture.mime_type == "image/jpeg")
            #expect(picture.message_type == "image")
            let pictureURL = try #require(picture.file_url)

            // The article's way: the attachment names only the `filename` and `/api/files/<filename>`.
            try await aliceSocket.send(["type": "message", "content": "look at this",
                                        "attachment": ["type": "image", "filename": articleName, "url": "/api/files/\(articleName)"]])
            let captioned = try await bobSocket.next("message", as: WebSocketMessage.self) { $0.content == "look at this" }
            #expect(captioned.message_type == "text_with_image")
            #expect(captioned.attachment?.url != nil)
            let captionedId = try #require(captioned.message_id)
            let frameAttachment = try #require(bobSocket.lastTaken()?["attachment"])
            let article = try JSONDecoder().decode(ArticleAttachment.self, from: JSONSerialization.data(withJSONObject: frameAttachment))
            #expect(article.type == .image && article.mimeType == "image/jpeg" && article.width == 300 && article.height == 400)

            // Every URL the two clients load, loaded as they do: no header at all.
            for url in [pictureURL, absolute, "/api/files/\(articleName)", try #require(article.url)] {
                let loaded = try await api.call("GET", url)
                #expect(loaded.status == 200, "GET \(url): \(loaded.text.prefix(200))")
                #expect(loaded.data == photo)
                #expect(loaded.headers["x-content-type-options"] == "nosniff")
            }
            let ranged = try await api.call("GET", "/api/files/\(articleName)", headers: ["Range": "bytes=0-99"])
            #expect(ranged.status == 206 && ranged.data == photo.prefix(100))
            #expect(try await api.call("GET", "/api/files/x\(articleName)").status == 404)

            // History: oldest first, ids, whole-second timestamps the app parses, captions kept.
            let history = try await api.call("GET", "/api/messages/\(room.id)", token: bob.access_token).decode([ServerMessage].self)
            #expect(history.count == 3)
            #expect(history.map(\.message_id) == history.map(\.message_id).sorted())
            let dates = history.map { AppDates.message($0.timestamp) }
            #expect(!dates.contains(nil), "timestamps the app cannot parse: \(history.map(\.timestamp))")
            #expect(dates.compactMap { $0 } == dates.compactMap { $0 }.sorted())
            let kept = try #require(history.last)
            #expect(kept.message_id == captionedId && kept.message == "look at this" && kept.message_type == "text_with_image")
            #expect(kept.file_url?.isEmpty == false && kept.file_name?.isEmpty == false && kept.mime_type == "image/jpeg")
            let recent = try await api.call("GET", "/api/messages/\(room.id)/recent?limit=2", token: bob.access_token)
                .decode([ServerMessage].self)
            #expect(recent.map(\.message_id) == Array(history.map(\.message_id).suffix(2)))

            // The room list with a last message decodes (it failed on `message_id` before).
            let rooms = try await api.call("GET", "/api/rooms", token: bob.access_token).decode([ChatRoom].self)
            #expect(rooms.first { $0.id == room.id }?.last_message?.message_id == captionedId)

            // Reactions: REST then the app's follow-up frame, seen by both with the full summary.
            let added = try await api.call("POST", "/api/reactions/add", token: bob.access_token,
                                           json: ["message_id": helloId, "reaction_type": ReactionType.thumbsUp.rawValue])
            #expect(added.status == 200, "\(added.text)")
            let addedBody = try added.decode(ReactionResponse.self)
            #expect(addedBody.success && addedBody.reaction?.reaction_type == .thumbsUp && addedBody.reaction?.message_id == helloId)
            try await bobSocket.send(["type": "reaction", "message_id": helloId, "reaction_type": ReactionType.thumbsUp.rawValue, "action": "add"])
            for socket in [aliceSocket, bobSocket] {
                let event = try await socket.next("reaction_added", as: ReactionEvent.self)
                #expect(event.message_id == helloId && event.sender == "bob" && event.reaction_type == .thumbsUp)
                #expect(event.reaction_summary.map(\.users) == [["bob"]])
            }
            // Another emoji replaces Bob's; Alice reacts over the socket alone.
            let changed = try await api.call("POST", "/api/reactions/add", token: bob.access_token,
                                             json: ["message_id": helloId, "reaction_type": ReactionType.heart.rawValue])
                .decode(ReactionResponse.self)
            #expect(changed.reaction_summary?.map(\.reaction_type) == [.heart])
            _ = try await aliceSocket.next("reaction_added", as: ReactionEvent.self) { $0.reaction_type == .heart }
            try await aliceSocket.send(["type": "reaction", "message_id": helloId, "reaction_type": ReactionType.laugh.rawValue, "action": "add"])
            let both = try await bobSocket.next("reaction_added", as: ReactionEvent.self) { $0.reaction_type == .laugh }
            #expect(Set(both.reaction_summary.map(\.reaction_type)) == [.heart, .laugh])
            let withReactions = try await api.call("GET", "/api/messages/\(room.id)", token: bob.access_token).decode([ServerMessage].self)
            let reacted = try #require(withReactions.first { $0.message_id == helloId })
            #expect(reacted.user_reaction == ReactionType.heart.rawValue)
            #expect(reacted.reactions?.reduce(0) { $0 + $1.count } == 2)

            let removed = try await api.call("DELETE", "/api/reactions/remove/\(helloId)", token: bob.access_token)
            #expect(removed.status == 200)
            let removedBody = try removed.decode(ReactionResponse.self)
            #expect(removedBody.reaction == nil && removedBody.reaction_summary?.map(\.reaction_type) == [.laugh])
            let gone = try await aliceSocket.next("reaction_removed", as: ReactionEvent.self)
            #expect(gone.reaction_type == .heart && gone.reaction_summary.map(\.reaction_type) == [.laugh])
            #expect(try await api.call("DELETE", "/api/reactions/remove/\(helloId)", token: bob.access_token).status == 404)
            let foreign = try await api.call("POST", "/api/reactions/add", token: bob.access_token,
                                             json: ["message_id": helloId, "reaction_type": "\u{1F642}"])
            #expect(foreign.status == 422)
            #expect(try await api.call("POST", "/api/reactions/add", token: bob.access_token,
                                       json: ["message_id": 999_999, "reaction_type": ReactionType.sad.rawValue]).status == 404)

            // Logging out closes that login's sockets at once.
            let logout = try await api.call("POST", "/api/auth/logout", token: alice.access_token,
                                            json: ["refresh_token": try #require(alice.refresh_token)])
            #expect(logout.status == 204)
            let closed = try await aliceSocket.waitForClose()
            #expect(closed?.closeCode == .unknown(4001))
            try await bobSocket.close()
        }
    }

    @Test("two refreshes at once get one successor; the access token expires with the socket open and chat goes on")
    func refreshAndExpiry() async throws {
        // Long enough to sign up and connect on a loaded machine, short enough to wait out.
        let app = try await buildApplication(try Self.configuration { $0.accessTokenSeconds = 6 })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let api = AppClient(base: "http://127.0.0.1:\(port)")
            let alice = try await Self.signUp(api, "alice")
            let bob = try await Self.signUp(api, "bob")
            let room = try await api.call("POST", "/api/rooms", token: alice.access_token, json: ["name": "long chat"]).decode(ChatRoom.self)
            let aliceSocket = try await AppSocket(port: port, roomId: room.id, token: alice.access_token)
            let bobSocket = try await AppSocket(port: port, roomId: room.id, token: bob.access_token)
            _ = try await aliceSocket.next("connected", as: WebSocketMessage.self)
            _ = try await bobSocket.next("connected", as: WebSocketMessage.self)

            // The app refreshes on every 401 without serialising: the same token, twice at once.
            let token = try #require(alice.refresh_token)
            async let first = api.call("POST", "/api/auth/refresh", json: ["refresh_token": token])
            async let second = api.call("POST", "/api/auth/refresh", json: ["refresh_token": token])
            let (one, two) = try await (first, second)
            #expect(one.status == 200 && two.status == 200, "\(one.text) / \(two.text)")
            let a = try one.decode(RefreshTokenResponse.self), b = try two.decode(RefreshTokenResponse.self)
            #expect(a.refresh_token != nil && a.refresh_token == b.refresh_token)
            let successor = try await api.call("POST", "/api/auth/refresh", json: ["refresh_token": try #require(a.refresh_token)])
            #expect(successor.status == 200, "the shared successor still works: \(successor.text)")

            // Past the access token's life: the sockets stay, and chat goes on both ways.
            try await Task.sleep(for: .seconds(7))
            #expect(try await api.call("GET", "/api/rooms", token: alice.access_token).status == 401)
            try await aliceSocket.send(["type": "message", "room_id": Int(room.id) ?? 0, "content": "still here", "sender": "alice"])
            let late = try await bobSocket.next("message", as: WebSocketMessage.self) { $0.content == "still here" }
            #expect(late.message_id != nil)
            try await bobSocket.send(["type": "message", "content": "me too", "sender": "bob"])
            _ = try await aliceSocket.next("message", as: WebSocketMessage.self) { $0.content == "me too" }
            try await aliceSocket.close()
            try await bobSocket.close()
        }
    }

    @Test("public rooms are listed to everyone and joined by entering; private ones stay 404 to others")
    func roomDiscovery() async throws {
        let app = try await buildApplication(try Self.configuration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let api = AppClient(base: "http://127.0.0.1:\(port)")
            let alice = try await Self.signUp(api, "alice")
            let carol = try await Self.signUp(api, "carol")
            let open = try await api.call("POST", "/api/rooms", token: alice.access_token, json: ["name": "open"]).decode(ChatRoom.self)
            let closed = try await api.call("POST", "/api/rooms", token: alice.access_token,
                                            json: ["name": "closed", "is_private": true]).decode(ChatRoom.self)
            _ = try await api.call("POST", "/api/messages", token: alice.access_token, json: ["room_id": Int(open.id) ?? 0, "content": "hi"])

            let listed = try await api.call("GET", "/api/rooms", token: carol.access_token).decode([ChatRoom].self)
            #expect(listed.map(\.id) == [open.id])
            for path in ["/api/messages/\(closed.id)", "/api/messages/\(closed.id)/recent", "/api/messages/424242"] {
                #expect(try await api.call("GET", path, token: carol.access_token).status == 404, "\(path)")
            }
            #expect(try await api.call("POST", "/api/rooms/\(closed.id)/mark-read", token: carol.access_token,
                                       jsonHeaderWithoutBody: true).status == 404)
            await #expect(throws: (any Error).self) {
                _ = try await AppSocket(port: port, roomId: closed.id, token: carol.access_token)
            }
            // Reading the public room's history joins it: Alice's next message is unread for Carol.
            let history = try await api.call("GET", "/api/messages/\(open.id)", token: carol.access_token).decode([ServerMessage].self)
            #expect(history.map(\.message) == ["hi"])
            _ = try await api.call("POST", "/api/messages", token: alice.access_token, json: ["room_id": Int(open.id) ?? 0, "content": "welcome"])
            let after = try await api.call("GET", "/api/rooms", token: carol.access_token).decode([ChatRoom].self)
            #expect(after.first { $0.id == open.id }?.unread_count == 1)
            let read = try await api.call("POST", "/api/rooms/\(open.id)/mark-read", token: carol.access_token, jsonHeaderWithoutBody: true)
            #expect((try JSONSerialization.jsonObject(with: read.data) as? [String: Any])?["read_count"] as? Int == 1)
            let cleared = try await api.call("GET", "/api/rooms", token: carol.access_token).decode([ChatRoom].self)
            #expect(cleared.first { $0.id == open.id }?.unread_count == 0)
        }
    }

    @Test("refused socket upgrades answer 401 or 404 with the JSON error body (curl)")
    func refusedUpgrades() async throws {
        let app = try await buildApplication(try Self.configuration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let api = AppClient(base: "http://127.0.0.1:\(port)")
            let alice = try await Self.signUp(api, "alice")
            let bob = try await Self.signUp(api, "bob")
            let mine = try await api.call("POST", "/api/rooms", token: alice.access_token,
                                          json: ["name": "mine", "is_private": true]).decode(ChatRoom.self)
            let cases: [(query: String, room: String, status: Int, code: String)] = [
                ("", mine.id, 401, "unauthorized"),
                ("?token=garbage", mine.id, 401, "unauthorized"),
                ("?token=\(bob.access_token)", mine.id, 404, "not_found"),
                ("?token=\(bob.access_token)", "424242", 404, "not_found"),
                ("?token=\(bob.access_token)", "general", 404, "not_found"),
            ]
            for item in cases {
                let output = try await Tool.run("curl", [
                    "-s", "-i", "--max-time", "10", "--http1.1",
                    "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
                    "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "http://127.0.0.1:\(port)/ws/chat/\(item.room)\(item.query)",
                ])
                let response = output.stdout.replacingOccurrences(of: "\r\n", with: "\n")
                let statusLine = response.split(separator: "\n").first.map(String.init) ?? ""
                #expect(statusLine.hasPrefix("HTTP/1.1 \(item.status)"), "\(item): \(response)")
                let body = response.components(separatedBy: "\n\n").dropFirst().joined(separator: "\n\n")
                let error = (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["error"] as? [String: Any]
                #expect(error?["code"] as? String == item.code, "\(item): \(response)")
            }
            // And the socket itself still upgrades for a member.
            let socket = try await AppSocket(port: port, roomId: mine.id, token: alice.access_token)
            _ = try await socket.next("connected", as: WebSocketMessage.self)
            try await socket.close()
        }
    }
}
