import ChatServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import MediagateTestSupport
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

/// Live server on 127.0.0.1 (port 0) and real WebSocket clients.
@Suite("WebSocket chat")
struct WebSocketTests {
    @Test("two users see each other's messages, typing, ack, delivered and read receipts")
    func conversation() async throws {
        let app = try await buildApplication(try testConfiguration { $0.typingTimeoutSeconds = 1 })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let bob = try await client.register("bob")
            let room = try await client.createRoom("pair", token: alice.access, members: ["bob"])
            let aliceSocket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            let bobSocket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(bob.access)")

            try await aliceSocket.send(["type": "typing_start"])
            let typing = try await bobSocket.inbox.next("typing_start")
            #expect(typing["sender"] as? String == "alice")
            #expect(typing["room_id"] as? Int == room)
            // Nobody sent typing_stop: it expires by itself.
            let stopped = try await bobSocket.inbox.next("typing_stop")
            #expect(stopped["sender"] as? String == "alice")

            try await aliceSocket.send(["type": "message", "content": "hi bob", "client_id": "c-1"])
            let received = try await bobSocket.inbox.next("message")
            #expect(received["content"] as? String == "hi bob")
            #expect(received["message"] as? String == "hi bob")
            #expect(received["sender"] as? String == "alice")
            #expect(received["room_id"] as? Int == room)
            #expect(received["client_id"] as? String == "c-1")
            let messageId = try #require(received["id"] as? Int)
            let ack = try await aliceSocket.inbox.next("ack")
            #expect(ack["status"] as? String == "sent")
            #expect(ack["client_id"] as? String == "c-1")
            #expect(ack["message_id"] as? Int == messageId)
            let delivered = try await aliceSocket.inbox.next("delivered")
            #expect(delivered["message_id"] as? Int == messageId)
            #expect((delivered["users"] as? [Any])?.first as? String == "bob")
            // The sender's own socket gets the message too (other devices, optimistic UI).
            _ = try await aliceSocket.inbox.next("message")

            try await bobSocket.send(["type": "read", "message_id": messageId])
            let read = try await aliceSocket.inbox.next("read")
            #expect(read["message_id"] as? Int == messageId)
            #expect(read["sender"] as? String == "bob")
            let bobsRooms = try await client.call(.get, "/api/rooms", token: bob.access)
            #expect(bobsRooms.array.first?["unread_count"] as? Int == 0)

            // A message posted over REST reaches the sockets as well.
            _ = try await client.call(.post, "/api/messages", token: bob.access, json: ["room_id": room, "content": "from rest"])
            let fromRest = try await aliceSocket.inbox.next("message", where: { $0["content"] as? String == "from rest" })
            #expect(fromRest["sender"] as? String == "bob")

            _ = try await aliceSocket.close()
            _ = try await bobSocket.close()
        }
    }

    @Test("a WebSocket message with an attachment reaches the room with the full attachment and seed keys")
    func attachmentMessage() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let bob = try await client.register("bob")
            let room = try await client.createRoom("pair", token: alice.access, members: ["bob"])
            let photo = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("photo-exif-orientation-6.jpg")))
            let fileId = try await FileServingTests.upload(client, token: alice.access, bytes: photo, name: "IMG_0042.jpg")
            let aliceSocket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            let bobSocket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(bob.access)")

            try await aliceSocket.send(["type": "message", "content": "look", "client_id": "pic-1", "attachment": ["file_id": fileId]])
            let received = try await bobSocket.inbox.next("message")
            let attachment = try #require(received["attachment"] as? [String: Any])
            #expect(attachment["type"] as? String == "image")
            #expect(attachment["filename"] as? String == "IMG_0042.jpg")
            #expect(attachment["width"] as? Int == 300 && attachment["height"] as? Int == 400)
            #expect(attachment["mimeType"] as? String == "image/jpeg")
            #expect(attachment["size"] as? Int == photo.count)
            #expect((attachment["blurhash"] as? String)?.isEmpty == false)
            #expect(received["message_type"] as? String == "text_with_image", "a captioned image")
            #expect(attachment["mime_type"] as? String == "image/jpeg")
            #expect(received["message_id"] as? Int == received["id"] as? Int)
            #expect(received["file_name"] as? String == "IMG_0042.jpg")
            #expect(received["file_size"] as? Int == photo.count)
            #expect(received["mime_type"] as? String == "image/jpeg")
            // Bob, who never held a token for the file, loads both URLs as AsyncImage would: no header.
            for key in ["url", "thumbnailUrl"] {
                let url = try #require(attachment[key] as? String)
                #expect(url.contains("sig="))
                let fetched = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)\(url)"])
                #expect(fetched.stdout == "200", "\(key)")
            }
            #expect(received["file_url"] as? String == attachment["url"] as? String)

            // An attachment naming a file nobody gave Bob is refused, and the socket stays up.
            try await bobSocket.send(["type": "message", "content": "mine now", "attachment": ["file_id": "not-a-file"]])
            #expect(try await bobSocket.inbox.next("error")["code"] as? String == "invalid")
            _ = try await aliceSocket.close()
            _ = try await bobSocket.close()
        }
    }

    @Test("bad frames get an error frame and the socket stays up")
    func badFrames() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let room = try await client.createRoom("r", token: alice.access)
            let socket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            try await socket.sendText("this is not json")
            #expect(try await socket.inbox.next("error")["code"] as? String == "bad_frame")
            try await socket.send(["type": "dance"])
            #expect(try await socket.inbox.next("error")["code"] as? String == "unknown_type")
            try await socket.send(["type": "message", "content": String(repeating: "x", count: 100_000)])
            #expect(try await socket.inbox.next("error")["code"] as? String == "too_large")
            try await socket.send(["type": "message", "content": ""])
            #expect(try await socket.inbox.next("error")["code"] as? String == "invalid")
            try await socket.send(["type": "read"])
            #expect(try await socket.inbox.next("error")["code"] as? String == "invalid")
            try await socket.send(["type": "ping"])
            _ = try await socket.inbox.next("pong")
            try await socket.send(["type": "message", "content": "still here"])
            _ = try await socket.inbox.next("ack")
            _ = try await socket.close()
        }
    }

    @Test("no token, a bad token or a room one is not in: no upgrade")
    func refusedUpgrades() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let mallory = try await client.register("mallory")
            let room = try await client.createRoom("r", token: alice.access, isPrivate: true)
            for path in ["/ws/chat/\(room)", "/ws/chat/\(room)?token=garbage", "/ws/chat/\(room)?token=\(mallory.access)",
                         "/ws/chat/nope?token=\(alice.access)"] {
                await #expect(throws: (any Error).self, "\(path)") { _ = try await TestSocket(port: port, path: path) }
            }
            let plain = try await client.call(.get, "/ws/chat/\(room)?token=\(mallory.access)")
            #expect(plain.status == .notFound)
        }
    }

    @Test("an expired access token leaves the socket open; a logout or a revoked login closes it with 4001")
    func sessionLifetime() async throws {
        // Long enough to register and connect on a loaded machine (2 s was not, with every suite
        // running, nor, once the hostile-load suites came, was 6 s, nor 12 s once now and then).
        let app = try await buildApplication(try testConfiguration { $0.accessTokenSeconds = 20; $0.refreshReuseGraceSeconds = 0 })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let room = try await client.createRoom("r", token: alice.access)
            let socket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            // A second login of the same user, on its own socket: it must outlive the first's logout.
            let login = try await client.call(.post, "/api/auth/login", json: ["username": "alice", "password": "correct horse"])
            let otherAccess = try #require(login.object["access_token"] as? String)
            let otherRefresh = try #require(login.object["refresh_token"] as? String)
            let other = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(otherAccess)")

            try await Task.sleep(for: .seconds(21)) // past the access tokens' life
            try await socket.send(["type": "ping"])
            _ = try await socket.inbox.next("pong")

            // Logging out with only the (expired) access token is refused; with a fresh one it
            // ends that token's login, and only its sockets close.
            let fresh = try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": alice.refresh])
            let freshAccess = try #require(fresh.object["access_token"] as? String)
            // (An empty JSON object: HummingbirdTesting sends a bodiless POST as chunked, which
            // the JSON body check refuses without a Content-Type.)
            let stale = try await client.call(.post, "/api/auth/logout", token: alice.access, json: [String: Any]())
            #expect(stale.status == .unauthorized, "\(stale.object)")
            let loggedOut = try await client.call(.post, "/api/auth/logout", token: freshAccess, json: [String: Any]())
            #expect(loggedOut.status == .noContent, "\(loggedOut.object)")
            let closed = try await socket.waitForClose()
            #expect(closed?.closeCode == .unknown(4001))
            #expect(try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": alice.refresh]).status == .unauthorized)
            try await other.send(["type": "ping"])
            _ = try await other.inbox.next("pong")

            // A spent refresh token replayed (no grace here) revokes its login: its socket closes too.
            let next = try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": otherRefresh])
            #expect(next.status == .ok)
            #expect(try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": otherRefresh]).status == .unauthorized)
            #expect(try await other.waitForClose()?.closeCode == .unknown(4001))
        }
    }
}
