import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import ChatServer
@testable import MediagateCore
import MediagateTestSupport
import Testing

/// Two gateway nodes on one PostgreSQL server, in one test: live servers on 127.0.0.1, real
/// WebSocket clients, no load balancer (each client picks its node).
@Suite("two nodes, one chat")
struct ClusterTests {
    @Test("through node A to sockets on node B, in order; tokens, typing, read and delivery receipts cross; a killed listener loses nothing")
    func fanOutAcrossNodes() async throws {
        let database = try await PostgresServer.freshDatabase("cluster")
        let nodeA = try await buildApplication(try testConfiguration { $0.database = database })
        let nodeB = try await buildApplication(try testConfiguration { $0.database = database })
        try await nodeA.test(.live) { a in
            try await nodeB.test(.live) { b in
                let portA = try #require(a.port), portB = try #require(b.port)
                let alice = try await a.register("alice")
                let bob = try await b.register("bob")
                // A token issued by one node is good on the other (the keys are in the database).
                #expect(try await b.call(.get, "/api/rooms", token: alice.access).status == .ok)
                let room = try await a.createRoom("pair", token: alice.access, members: ["bob"])
                let aliceSocket = try await TestSocket(port: portA, path: "/ws/chat/\(room)?token=\(alice.access)")
                let bobSocket = try await TestSocket(port: portB, path: "/ws/chat/\(room)?token=\(bob.access)")

                for n in 1...5 {
                    let posted = try await a.call(.post, "/api/messages", token: alice.access, json: ["room_id": room, "content": "m\(n)"])
                    #expect(posted.status == .created || posted.status == .ok)
                }
                var received: [String] = []
                for _ in 1...5 { received.append(try await bobSocket.inbox.next("message")["content"] as? String ?? "") }
                #expect(received == ["m1", "m2", "m3", "m4", "m5"])
                // Node B tells the sender, on node A, who got it there.
                let delivered = try await aliceSocket.inbox.next("delivered")
                #expect((delivered["users"] as? [Any])?.first as? String == "bob")

                try await aliceSocket.send(["type": "typing_start"])
                #expect(try await bobSocket.inbox.next("typing_start")["sender"] as? String == "alice")
                let last = try #require(try await aliceSocket.inbox.next("message", where: { $0["content"] as? String == "m5" })["id"] as? Int)
                try await bobSocket.send(["type": "read", "message_id": last])
                #expect(try await aliceSocket.inbox.next("read")["sender"] as? String == "bob")

                // Every listening connection killed by the server: what is posted meanwhile
                // arrives all the same, in order, once the nodes have listened again.
                let killed = try await PostgresServer.psql(database, """
                    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND datname = current_database()
                    """)
                #expect(killed == "2")
                for n in 6...8 {
                    _ = try await a.call(.post, "/api/messages", token: alice.access, json: ["room_id": room, "content": "m\(n)"])
                }
                received = []
                for _ in 6...8 { received.append(try await bobSocket.inbox.next("message")["content"] as? String ?? "") }
                #expect(received == ["m6", "m7", "m8"])
                #expect(await bobSocket.inbox.all("message").isEmpty) // and nothing twice
                var listening = ""
                for _ in 0..<100 where listening != "2" {
                    listening = try await PostgresServer.psql(database, "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND datname = current_database()")
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(listening == "2")

                // A logout on node B closes the socket its login opened on node A.
                let carol = try await b.register("carol")
                _ = try await b.call(.post, "/api/rooms/\(room)/members", token: alice.access, json: ["username": "carol"])
                let carolSocket = try await TestSocket(port: portA, path: "/ws/chat/\(room)?token=\(carol.access)")
                _ = try await b.call(.post, "/api/auth/logout", token: carol.access, json: ["refresh_token": carol.refresh])
                let closed = try await carolSocket.waitForClose()
                #expect(closed?.closeCode == .unknown(4001), "\(String(describing: closed))")
                // …and its access token is refused on node A at once, not when it expires.
                #expect(try await a.call(.get, "/api/rooms", token: carol.access).status == .unauthorized)

                _ = try await aliceSocket.close()
                _ = try await bobSocket.close()
            }
        }
    }
}

@Suite("readiness")
struct ReadinessTests {
    @Test("/readyz: ready on SQLite; 503 storage when the data directory is gone")
    func sqlite() async throws {
        let configuration = try testConfiguration()
        let app = try await buildApplication(configuration)
        try await app.test(.router) { client in
            // Asked again for up to 30 s, as a balancer would: while every suite starts at once
            // on two cores a probe can miss its 2 s (CI saw it once).
            var ready = try await client.call(.get, "/readyz")
            let deadline = ContinuousClock.now + .seconds(30)
            while ready.status != .ok && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(500))
                ready = try await client.call(.get, "/readyz")
            }
            #expect(ready.status == .ok && ready.object["status"] as? String == "ready" && ready.object["database"] as? String == "sqlite",
                    "\(ready.object)")
            try FileManager.default.removeItem(atPath: configuration.dataDirectory)
            let gone = try await client.call(.get, "/readyz")
            #expect(gone.status == .serviceUnavailable && gone.object["failing"] as? [String] == ["storage"], "\(gone.object)")
            #expect(try await client.call(.get, "/healthz").status == .ok) // alive all the same
        }
    }

    @Test("/readyz: ready on PostgreSQL; 503 database when the server stops taking connections")
    func postgres() async throws {
        let database = try await PostgresServer.freshDatabase("ready")
        let app = try await buildApplication(try testConfiguration { $0.database = database })
        try await app.test(.router) { client in
            let ready = try await client.call(.get, "/readyz")
            #expect(ready.status == .ok && ready.object["database"] as? String == "postgresql")
            let name = String(database.split(separator: "/").last!)
            let admin = database.replacingOccurrences(of: "/\(name)", with: "/postgres")
            _ = try await PostgresServer.psql(admin, "ALTER DATABASE \(name) ALLOW_CONNECTIONS false")
            _ = try await PostgresServer.psql(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(name)'")
            let asked = ContinuousClock.now
            let down = try await client.call(.get, "/readyz")
            // 2 s and some on a loaded machine; waiting for the stuck query was a minute or more.
            #expect(ContinuousClock.now - asked < .seconds(10), "the answer waits for no probe past its 2 s")
            #expect(down.status == .serviceUnavailable && down.object["failing"] as? [String] == ["database"], "\(down.object)")
            _ = try await PostgresServer.psql(admin, "ALTER DATABASE \(name) ALLOW_CONNECTIONS true")
            // The pool retries connecting with a growing pause (seen: 3, 5, 7, 10, 14 s): ready
            // again within a minute.
            var back = down
            let deadline = ContinuousClock.now + .seconds(60)
            while back.status != .ok && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                back = try await client.call(.get, "/readyz")
            }
            #expect(back.status == .ok)
        }
    }
}

@Suite("metrics")
struct MetricsTests {
    static func value(_ text: String, _ prefix: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } }
    }

    @Test("/metrics: Prometheus text with requests by route, sockets, upload bytes, pipeline time and rate-limit refusals")
    func prometheus() async throws {
        let app = try await buildApplication(try testConfiguration {
            $0.rateLimits.roomActionsPerUser = RateLimit(perMinute: 1, burst: 1)
        })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let room = try await client.createRoom("r", token: alice.access)
            #expect(try await client.call(.post, "/api/rooms", token: alice.access, json: ["name": "again"]).status == .tooManyRequests)
            let socket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            let photo = try Data(contentsOf: URL(fileURLWithPath: try await Fixtures.locationFreeCopy(of: "photo-exif-orientation-6.jpg")))
            _ = try await FileServingTests.upload(client, token: alice.access, bytes: photo, name: "p.jpg")

            let response = try await client.execute(uri: "/metrics", method: .get)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let text = String(buffer: response.body)
            #expect(text.contains(#"http_route="/api/rooms""#) || text.contains(#"/api/rooms"#), "\(text.prefix(3000))")
            #expect((Self.value(text, "mediagate_sockets_open") ?? 0) >= 1, "\(text.prefix(3000))")
            #expect((Self.value(text, #"mediagate_upload_bytes_total{protocol="tus"}"#) ?? 0) >= Double(photo.count))
            #expect(text.contains(#"mediagate_pipeline_seconds_count{type="image"}"#))
            #expect((Self.value(text, #"mediagate_rate_limited_total{limit="room_actions"}"#) ?? 0) >= 1)
            _ = try await socket.close()
        }
    }

    @Test("/metrics is not for strangers: another address gets 404")
    func loopbackOnly() async throws {
        let app = try await buildApplication(try testConfiguration { $0.trustedProxies = ["127.0.0.1"] })
        try await app.test(.live) { client in
            let response = try await client.execute(uri: "/metrics", method: .get, headers: [HTTPField.Name("X-Forwarded-For")!: "203.0.113.9"])
            #expect(response.status == .notFound)
        }
    }
}
