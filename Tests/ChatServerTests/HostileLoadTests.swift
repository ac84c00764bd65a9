@testable import ChatServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import MediagateTestSupport
import NIOCore
import Synchronization
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

/// Cheap requests that used to cost everyone (issue #13): floods are refused with 429 and
/// `Retry-After`, secrets stay out of the log, replays and retries change nothing.
@Suite("hostile load")
struct HostileLoadTests {
    /// One limit tight enough to hit in a test, every other at its default.
    static func limited(_ adjust: @escaping (inout RateLimits) -> Void) throws -> ChatConfiguration {
        try testConfiguration { adjust(&$0.rateLimits) }
    }

    static func retryAfter(_ response: JSONResponse) -> Int? {
        response.headers[.retryAfter].flatMap(Int.init)
    }

    @Test("a registration flood from one address is refused with 429 and Retry-After; logins go on")
    func registrationFlood() async throws {
        let app = try await buildApplication(try Self.limited { $0.registrationsPerAddress = RateLimit(perMinute: 1, burst: 3) })
        try await app.test(.router) { client in
            for n in 1...3 { _ = try await client.register("user\(n)") }
            let refused = try await client.call(.post, "/api/auth/signup", json: ["username": "user4", "password": "correct horse"])
            #expect(refused.status == .tooManyRequests)
            #expect(refused.errorCode == "too_many_requests")
            // A token a minute: the wait is the rest of the minute since the first registration
            // (the three took up to 11 s with every suite running on two cores).
            #expect((40...60).contains(Self.retryAfter(refused) ?? 0), "\(refused.headers)")
            let login = try await client.call(.post, "/api/auth/login", json: ["username": "user1", "password": "correct horse"])
            #expect(login.status == .ok)
        }
    }

    @Test("messages past the rate: REST answers 429, a socket gets error frames and then a 1008 close")
    func messageFlood() async throws {
        let app = try await buildApplication(try Self.limited { $0.messagesPerUser = RateLimit(perMinute: 1, burst: 3) })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let bob = try await client.register("bob")
            let room = try await client.createRoom("r", token: alice.access, members: ["bob"])
            for n in 1...3 {
                let posted = try await client.call(.post, "/api/messages", token: alice.access, json: ["room_id": room, "content": "m\(n)"])
                #expect(posted.status == .created)
            }
            let refused = try await client.call(.post, "/api/messages", token: alice.access, json: ["room_id": room, "content": "m4"])
            #expect(refused.status == .tooManyRequests && Self.retryAfter(refused) != nil)
            // The limit is per sender: bob still talks.
            #expect(try await client.call(.post, "/api/messages", token: bob.access, json: ["room_id": room, "content": "hi"]).status == .created)

            // The same bucket on a socket: refused frames are answered, a flood is closed.
            let socket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            try await socket.send(["type": "message", "content": "over"])
            #expect(try await socket.inbox.next("error")["code"] as? String == "too_many_requests")
            for n in 0..<80 { try? await socket.send(["type": "message", "content": "flood \(n)"]) }
            let close = try await socket.waitForClose()
            #expect(close?.closeCode == .policyViolation, "\(String(describing: close))")
            let history = try await client.call(.get, "/api/messages/\(room)", token: bob.access)
            #expect(history.array.count == 4, "only the messages within the limit were stored")
        }
    }

    @Test("one user's sockets are capped: the upgrade past the cap answers 429 with Retry-After; another user connects")
    func socketsPerUser() async throws {
        let app = try await buildApplication(try testConfiguration { $0.maxSocketsPerUser = 2 })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let bob = try await client.register("bob")
            let room = try await client.createRoom("r", token: alice.access, members: ["bob"])
            let first = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            let second = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            func upgrade(_ token: String) async throws -> String {
                try await Tool.run("curl", ["-s", "-i", "--max-time", "10", "--http1.1",
                                            "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
                                            "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                            "http://127.0.0.1:\(port)/ws/chat/\(room)?token=\(token)"]).stdout
            }
            let refused = try await upgrade(alice.access)
            #expect(refused.hasPrefix("HTTP/1.1 429"), "\(refused)")
            #expect(refused.lowercased().contains("retry-after: 5") && refused.contains("too_many_requests"), "\(refused)")
            let other = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(bob.access)")
            try await other.send(["type": "ping"])
            _ = try await other.inbox.next("pong")
            // A socket closed frees its place.
            _ = try await first.close()
            try await Task.sleep(for: .milliseconds(200))
            let third = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(alice.access)")
            try await third.send(["type": "ping"])
            _ = try await third.inbox.next("pong")
            for socket in [second, other, third] { _ = try await socket.close() }
        }
    }

    @Test("room creation past the rate answers 429")
    func roomFlood() async throws {
        let app = try await buildApplication(try Self.limited { $0.roomActionsPerUser = RateLimit(perMinute: 1, burst: 2) })
        try await app.test(.router) { client in
            let mallory = try await client.register("mallory")
            _ = try await client.register("victim")
            for n in 1...2 { _ = try await client.createRoom("spam \(n)", token: mallory.access, members: ["victim"]) }
            let refused = try await client.call(.post, "/api/rooms", token: mallory.access, json: ["name": "spam 3", "members": ["victim"]])
            #expect(refused.status == .tooManyRequests && Self.retryAfter(refused) != nil)
        }
    }

    @Test("uploads started past the rate answer 429, on tus and multipart alike")
    func uploadStartFlood() async throws {
        let app = try await buildApplication(try Self.limited { $0.uploadsPerUser = RateLimit(perMinute: 1, burst: 2) })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            for _ in 1...2 {
                let created = try await TusUploadTests.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "0"])
                #expect(created.status == .created)
            }
            let refused = try await TusUploadTests.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "0"])
            #expect(refused.status == .tooManyRequests && refused.headers[.retryAfter] != nil)
            let multipart = try await MultipartUploadTests.curl(["-H", "Authorization: Bearer \(alice.access)",
                                                                 "-F", "file=@\(Fixtures.media("readme.txt"))",
                                                                 "http://127.0.0.1:\(port)/api/upload-file"])
            #expect(multipart.status == 429)
        }
    }

    @Test("a bucket holds its burst, refills at its rate, and says how long to wait")
    func bucketRefill() {
        let limiter = RateLimiter(RateLimit(perMinute: 120, burst: 2)) // a token every 0.5 s
        let start = ContinuousClock.now
        #expect(limiter.retryAfter("alice", now: start) == nil)
        #expect(limiter.retryAfter("alice", now: start) == nil)
        #expect(limiter.retryAfter("alice", now: start) == 1, "the burst is spent: wait for the next token")
        #expect(limiter.retryAfter("bob", now: start) == nil, "buckets are per key")
        #expect(limiter.retryAfter("alice", now: start + .milliseconds(400)) == 1)
        #expect(limiter.retryAfter("alice", now: start + .milliseconds(600)) == nil, "one token grew back")
        // An hour idle refills to the burst, not beyond.
        let later = start + .seconds(3600)
        #expect(limiter.retryAfter("alice", now: later) == nil)
        #expect(limiter.retryAfter("alice", now: later) == nil)
        #expect(limiter.retryAfter("alice", now: later) != nil)
    }

    @Test("the bucket table stays bounded however many keys a flood brings")
    func boundedKeys() {
        let limiter = RateLimiter(RateLimit(perMinute: 60, burst: 1), maxKeys: 1000)
        let now = ContinuousClock.now
        for n in 0..<10_000 { _ = limiter.retryAfter("10.0.\(n / 256).\(n % 256)", now: now) }
        #expect(limiter.keyCount <= 1000)
        // The newest keys, whose buckets are empty, are the ones kept.
        #expect(limiter.retryAfter("10.0.39.15", now: now) != nil)
    }

    @Test("a limit without a burst is a configuration error")
    func limitValidation() throws {
        var configuration = try testConfiguration()
        configuration.rateLimits.messagesPerUser = RateLimit(perMinute: 60, burst: 0)
        #expect(throws: ConfigurationError.self) { try configuration.validate() }
        configuration.rateLimits.messagesPerUser = .unlimited
        try configuration.validate()
    }

    @Test("an attacker's wrong passwords throttle the attacker, not the victim logging in from elsewhere")
    func lockoutSparesTheVictim() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            _ = try await client.register("victim")
            func login(_ password: String, from address: String, forwardedFor: String? = nil) async throws -> Int {
                var arguments = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", address, "-H", "Content-Type: application/json",
                                 "-d", #"{"username":"victim","password":"\#(password)"}"#, "http://127.0.0.1:\(port)/api/auth/login"]
                if let forwardedFor { arguments += ["-H", "X-Forwarded-For: \(forwardedFor)"] }
                return Int(try await Tool.run("curl", arguments).stdout) ?? 0
            }
            for _ in 0..<5 { #expect(try await login("guess", from: "127.0.0.1") == 401) }
            #expect(try await login("correct horse", from: "127.0.0.1") == 429, "the guessing address is throttled")
            #expect(try await login("correct horse", from: "127.0.0.2") == 200, "the victim, elsewhere, is not")
            // Without trusted proxies, X-Forwarded-For changes nothing: still the guessing address.
            #expect(try await login("correct horse", from: "127.0.0.1", forwardedFor: "10.9.9.9") == 429)
        }
    }

    /// A login through curl as a proxy would forward it; returns the status.
    static func login(port: Int, _ name: String, _ password: String, forwardedFor: String) async throws -> Int {
        Int(try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json",
                                        "-H", "X-Forwarded-For: \(forwardedFor)", "-d", #"{"username":"\#(name)","password":"\#(password)"}"#,
                                        "http://127.0.0.1:\(port)/api/auth/login"]).stdout) ?? 0
    }

    @Test("behind a trusted proxy the client is X-Forwarded-For's: one client's failures do not block the others")
    func trustedProxy() async throws {
        let app = try await buildApplication(try testConfiguration {
            $0.trustedProxies = ["127.0.0.1"]
            $0.maxFailedLoginsPerAddress = 3
        })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            _ = try await client.register("carol")
            func login(_ name: String, _ password: String, forwardedFor: String) async throws -> Int {
                try await Self.login(port: port, name, password, forwardedFor: forwardedFor)
            }
            for name in ["x1", "x2", "x3"] { #expect(try await login(name, "guess", forwardedFor: "10.0.0.1") == 401) }
            #expect(try await login("carol", "correct horse", forwardedFor: "10.0.0.1") == 429)
            // A spoofed entry on the left is the client's own writing; the proxy appended 10.0.0.2.
            #expect(try await login("carol", "correct horse", forwardedFor: "10.0.0.1, 10.0.0.2") == 200)
        }
    }

    @Test("guessers from many addresses reach the user's ceiling: new addresses wait, the owner's known device logs in")
    func knownDeviceSurvivesTheCeiling() async throws {
        let app = try await buildApplication(try testConfiguration {
            $0.trustedProxies = ["127.0.0.1"]
            $0.maxFailedLoginsPerUserAllAddresses = 10
        })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            _ = try await client.register("dave")
            func login(_ password: String, forwardedFor: String) async throws -> Int {
                try await Self.login(port: port, "dave", password, forwardedFor: forwardedFor)
            }
            #expect(try await login("correct horse", forwardedFor: "10.0.0.50") == 200, "dave's phone, before the attack")
            for index in 1...10 { #expect(try await login("guess \(index)", forwardedFor: "10.1.0.\(index)") == 401) }
            #expect(try await login("correct horse", forwardedFor: "10.2.0.1") == 429, "an address dave never used waits out the window")
            #expect(try await login("correct horse", forwardedFor: "10.0.0.50") == 200, "dave's phone is not locked out")
        }
    }

    @Test("a registration flood from many clients: hashing is bounded (503 past the waiting limit), file reads stay fast")
    func hashingFlood() async throws {
        let app = try await buildApplication(try testConfiguration {
            $0.passwordHashCost = 9
            $0.maxPendingPasswordHashes = 4 // 64 by default; small here, so that 40 requests overrun it
            $0.rateLimits = .none // many clients, as far as the limits can tell
        })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let photo = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("progressive.jpg")))
            let id = try await FileServingTests.upload(client, token: alice.access, bytes: photo, name: "photo.jpg")
            async let flood = Tool.run("sh", ["-c", """
                seq 40 | xargs -P 40 -I{} curl -s -o /dev/null -w '%{http_code}\\n' -H 'Content-Type: application/json' \
                  -d '{"username":"u{}","password":"long enough password"}' http://127.0.0.1:\(port)/api/auth/register
                """])
            try await Task.sleep(for: .milliseconds(300))
            let read = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                                                   "-H", "Authorization: Bearer \(alice.access)", "http://127.0.0.1:\(port)/api/files/\(id)"])
            // Logins have their own lane: the registrations' full queue neither refuses nor holds them.
            let login = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json",
                                                    "-d", #"{"username":"alice","password":"correct horse"}"#,
                                                    "http://127.0.0.1:\(port)/api/auth/login"])
            #expect(login.stdout == "200", "a login during the registration flood answered \(login.stdout)")
            let statuses = try await flood.stdout.split(separator: "\n").map(String.init)
            #expect(statuses.count == 40)
            #expect(statuses.contains("503"), "nothing was refused: \(statuses)")
            #expect(statuses.allSatisfy { $0 == "201" || $0 == "503" }, "\(statuses)")
            let parts = read.stdout.split(separator: " ")
            // It took 9 s when bcrypt shared NIO's pool with file I/O (2 s was too tight with every
            // suite running on two cores).
            #expect(parts.first == "200" && (Double(parts.last ?? "") ?? 99) < 4, "\(read.stdout)")
        }
    }

    @Test("access tokens are not read from ?token= on REST routes; the socket upgrade still takes one")
    func queryTokensOnlyForSockets() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            #expect(try await client.call(.get, "/api/rooms?token=\(alice.access)").status == .unauthorized)
            #expect(try await client.call(.get, "/api/rooms", token: alice.access).status == .ok)
        }
    }

    @Test("the request log names no token and no signature")
    func logsRedactSecrets() async throws {
        let lines = LogLines()
        var logger = Logger(label: "mediagate") { _ in lines }
        logger.logLevel = .info
        let app = try await buildApplication(try testConfiguration(), logger: logger)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            _ = try await client.call(.get, "/api/rooms?token=\(alice.access)")
            _ = try await client.call(.get, "/api/files/abc?exp=1&sig=SECRETSIGNATURE")
        }
        let text = lines.all.joined(separator: "\n")
        #expect(text.contains("/api/rooms?token=REDACTED"), "\(text.suffix(2000))")
        #expect(text.contains("sig=REDACTED"))
        #expect(!text.contains("SECRETSIGNATURE"))
        #expect(!text.contains(".eyJ"), "an access token (a JWT) reached the log")
    }

    @Test("a logout ends that login's access tokens at once, also after a restart; the user's other logins go on")
    func logoutEndsAccessTokens() async throws {
        let configuration = try testConfiguration()
        let first = try await buildApplication(configuration)
        try await first.test(.router) { client in
            let alice = try await client.register("alice")
            let login = try await client.call(.post, "/api/auth/login", json: ["username": "alice", "password": "correct horse"])
            let other = try #require(login.object["access_token"] as? String)
            let stolen = alice.access
            #expect(try await client.call(.get, "/api/auth/me", token: stolen).status == .ok)
            #expect(try await client.call(.post, "/api/auth/logout", token: alice.access, json: ["refresh_token": alice.refresh]).status == .noContent)
            let after = try await client.call(.get, "/api/auth/me", token: stolen)
            #expect(after.status == .unauthorized, "\(after.object)")
            #expect(try await client.call(.get, "/api/auth/me", token: other).status == .ok)

            // A server started afresh on the same data (as after a restart) still refuses it.
            let restarted = try await buildApplication(configuration)
            try await restarted.test(.router) { client in
                let ended = try await client.call(.get, "/api/auth/me", token: stolen)
                let going = try await client.call(.get, "/api/auth/me", token: other)
                #expect(ended.status == .unauthorized && going.status == .ok)
            }
        }
    }

    @Test("a client_id replayed into another room is a new message there, not the first room's")
    func clientIdPerRoom() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let first = try await client.createRoom("first", token: alice.access)
            let second = try await client.createRoom("second", token: alice.access)
            let a = try await client.call(.post, "/api/messages", token: alice.access, json: ["room_id": first, "content": "x", "client_id": "c-1"])
            let again = try await client.call(.post, "/api/messages", token: alice.access, json: ["room_id": first, "content": "x", "client_id": "c-1"])
            #expect(a.status == .created && again.status == .ok && again.object["id"] as? Int == a.object["id"] as? Int)
            let b = try await client.call(.post, "/api/messages", token: alice.access, json: ["room_id": second, "content": "y", "client_id": "c-1"])
            #expect(b.status == .created)
            #expect(b.object["room_id"] as? Int == second && b.object["id"] as? Int != a.object["id"] as? Int, "\(b.object)")
        }
    }

    @Test("the seed app's socket echo of a reaction, arriving after the user changed it over REST, does not put the old one back")
    func lateReactionEcho() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let bob = try await client.register("bob")
            let room = try await client.createRoom("r", token: bob.access)
            let posted = try await client.call(.post, "/api/messages", token: bob.access, json: ["room_id": room, "content": "hi"])
            let messageId = try #require(posted.object["id"] as? Int)
            let socket = try await TestSocket(port: port, path: "/ws/chat/\(room)?token=\(bob.access)")
            for type in ["\u{1F44D}", "\u{2764}\u{FE0F}"] { // 👍, then ❤️ replacing it
                let added = try await client.call(.post, "/api/reactions/add", token: bob.access, json: ["message_id": messageId, "reaction_type": type])
                #expect(added.status == .ok)
            }
            // The echo of the first call comes late; then one over the socket alone is applied.
            try await socket.send(["type": "reaction", "message_id": messageId, "reaction_type": "\u{1F44D}", "action": "add"])
            try await socket.send(["type": "ping"])
            _ = try await socket.inbox.next("pong")
            let history = try await client.call(.get, "/api/messages/\(room)", token: bob.access)
            #expect(history.array.first?["user_reaction"] as? String == "\u{2764}\u{FE0F}", "\(history.array)")
            try await socket.send(["type": "reaction", "message_id": messageId, "reaction_type": "\u{1F602}", "action": "add"])
            _ = try await socket.inbox.next("reaction_added") { $0["reaction_type"] as? String == "\u{1F602}" }
            let later = try await client.call(.get, "/api/messages/\(room)", token: bob.access)
            #expect(later.array.first?["user_reaction"] as? String == "\u{1F602}")
            _ = try await socket.close()
        }
    }

    @Test("multipart: a huge part header is refused at 16 KiB, a chunked body of other parts at the size limit; a file with no CR byte arrives whole")
    func multipartBounds() async throws {
        let app = try await buildApplication(try testConfiguration { $0.maxMultipartBytes = 1 << 20 })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let url = "http://127.0.0.1:\(port)/api/upload-file"
            let work = try Fixtures.temporaryDirectory("multipart-bounds")
            func body(_ name: String, _ parts: String) async throws -> String {
                let path = work.appendingPathComponent(name).path
                try await Tool.text("python3", ["-c", parts, path])
                return path
            }
            func send(_ path: String, chunked: Bool = false) async throws -> (status: Int, seconds: Double) {
                let started = ContinuousClock.now
                var arguments = ["-H", "Authorization: Bearer \(alice.access)", "-H", "Content-Type: multipart/form-data; boundary=XyZ",
                                 "--data-binary", "@\(path)", url]
                if chunked { arguments = ["-H", "Transfer-Encoding: chunked"] + arguments }
                let result = try await MultipartUploadTests.curl(arguments)
                let elapsed = ContinuousClock.now - started
                return (result.status, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            }
            let zeros = try await body("zeros", """
                import sys
                open(sys.argv[1], "wb").write(b'--XyZ\\r\\nContent-Disposition: form-data; name="file"; filename="z.bin"\\r\\n\\r\\n'
                    + bytes(900_000) + b'\\r\\n--XyZ--\\r\\n')
                """)
            #expect(try await send(zeros).status == 200)
            let hugeHeader = try await body("header", """
                import sys
                open(sys.argv[1], "wb").write(b'--XyZ\\r\\nContent-Disposition: form-data; name="file"; filename="a.txt"\\r\\nX-Pad: '
                    + b'a' * 900_000 + b'\\r\\n\\r\\nhello\\r\\n--XyZ--\\r\\n')
                """)
            let header = try await send(hugeHeader)
            #expect(header.status == 400 && header.seconds < 5, "\(header)")
            let manyParts = try await body("parts", """
                import sys
                with open(sys.argv[1], "wb") as f:
                    for n in range(40):
                        f.write(b'--XyZ\\r\\nContent-Disposition: form-data; name="note%d"\\r\\n\\r\\n' % n + b'x' * 100_000 + b'\\r\\n')
                    f.write(b'--XyZ--\\r\\n')
                """)
            #expect(try await send(manyParts, chunked: true).status == 413)
        }
    }

    @Test("100 tus creations at once against a quota with room for 5: exactly 5 are accepted")
    func quotaUnderRace() async throws {
        let app = try await buildApplication(try testConfiguration { $0.userQuotaBytes = 5_000 })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            // 100 curl processes at once, each its own connection: the server sees them together (the
            // check and the insert apart, 7-9 of them were accepted).
            let output = try await Tool.run("sh", ["-c", """
                seq 100 | xargs -P 100 -I{} curl -s -o /dev/null -w '%{http_code}\\n' -X POST \
                  -H 'Authorization: Bearer \(alice.access)' -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 1000' \
                  http://127.0.0.1:\(port)/api/uploads
                """])
            let statuses = output.stdout.split(separator: "\n").map(String.init)
            #expect(statuses.filter { $0 == "201" }.count == 5, "\(statuses)")
            #expect(statuses.filter { $0 == "413" }.count == 95, "\(statuses)")
        }
    }

    @Test("unfinished uploads per user are capped: the creation past the cap answers 429; finishing one makes room")
    func openUploadsCap() async throws {
        let app = try await buildApplication(try testConfiguration { $0.maxOpenUploadsPerUser = 3 })
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            var locations = [String]()
            for _ in 0..<3 {
                let created = try await TusUploadTests.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "5"])
                #expect(created.status == .created)
                locations.append(try #require(created.headers[.location]))
            }
            let refused = try await TusUploadTests.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "5"])
            #expect(refused.status == .tooManyRequests && refused.headers[.retryAfter] != nil)
            let finished = try await TusUploadTests.tus(client, .patch, locations[0], token: alice.access,
                                                        headers: TusUploadTests.octets.merging(["Upload-Offset": "0"]) { $1 },
                                                        body: Data("hello".utf8))
            #expect(finished.status == .noContent)
            let again = try await TusUploadTests.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "5"])
            #expect(again.status == .created)
        }
    }

    @Test("below the free-disk floor uploads are refused with 507, on tus and multipart; everything else goes on")
    func diskFloor() async throws {
        let app = try await buildApplication(try testConfiguration { $0.minFreeDiskBytes = 1 << 60 }) // more than any disk here
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let tus = try await TusUploadTests.tus(client, .post, "/api/uploads", token: alice.access, headers: ["Upload-Length": "10"])
            #expect(tus.status.code == 507, "\(tus.status)")
            let multipart = try await MultipartUploadTests.curl(["-H", "Authorization: Bearer \(alice.access)",
                                                                 "-F", "file=@\(Fixtures.media("readme.txt"))",
                                                                 "http://127.0.0.1:\(port)/api/upload-file"])
            #expect(multipart.status == 507 && (multipart.body["error"] as? [String: Any])?["code"] as? String == "insufficient_storage")
            let room = try await client.createRoom("r", token: alice.access)
            #expect(try await client.call(.post, "/api/messages", token: alice.access, json: ["room_id": room, "content": "still here"]).status == .created)
        }
    }

    @Test("a PATCH at the end of a completed upload is a 204 no-op; the upload is processed once")
    func patchAfterCompletion() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let bytes = Data("hello, twice".utf8)
            let created = try await TusUploadTests.tus(client, .post, "/api/uploads", token: alice.access,
                                                       headers: TusUploadTests.octets.merging(["Upload-Length": String(bytes.count)]) { $1 },
                                                       body: bytes)
            let location = try #require(created.headers[.location])
            let ready = try await TusUploadTests.waitForFile(client, location, token: alice.access)
            let fileId = try #require(ready.object["file_id"] as? String)
            let retry = try await TusUploadTests.tus(client, .patch, location, token: alice.access,
                                                     headers: TusUploadTests.octets.merging(["Upload-Offset": String(bytes.count)]) { $1 })
            #expect(retry.status == .noContent)
            #expect(retry.headers[HTTPField.Name("Upload-Offset")!] == String(bytes.count))
            let more = try await TusUploadTests.tus(client, .patch, location, token: alice.access,
                                                    headers: TusUploadTests.octets.merging(["Upload-Offset": String(bytes.count)]) { $1 },
                                                    body: Data("!".utf8))
            #expect(more.status == .contentTooLarge)
            let after = try await client.call(.get, location, token: alice.access)
            #expect(after.status == .ok && after.object["file_id"] as? String == fileId)
        }
    }

    @Test("a thumbnail that failed is not attempted again: the failure is remembered")
    func failedThumbnailsAreRemembered() async throws {
        let configuration = try testConfiguration()
        let app = try await buildApplication(configuration)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let photo = try Data(contentsOf: URL(fileURLWithPath: Fixtures.media("progressive.jpg")))
            let id = try await FileServingTests.upload(client, token: alice.access, bytes: photo, name: "photo.jpg")
            let info = try await client.call(.get, "/api/files/\(id)", token: alice.access)
            #expect(info.status == .ok)
            // The stored bytes go bad behind the server's back; the first request finds out.
            let sha256 = try await Tool.text("sha256sum", [Fixtures.media("progressive.jpg")]).prefix(64)
            let blob = configuration.dataDirectory + "/files/" + sha256
            try Data("not a picture any more".utf8).write(to: URL(fileURLWithPath: blob))
            let failed = try await client.call(.get, "/api/files/\(id)/thumbnail?w=640&format=png", token: alice.access)
            #expect(failed.status == .unprocessableContent || failed.status == .notFound, "\(failed.status)")
            // Repaired, the bytes would render; the remembered failure answers without trying.
            try photo.write(to: URL(fileURLWithPath: blob))
            let again = try await client.call(.get, "/api/files/\(id)/thumbnail?w=1280&format=png", token: alice.access)
            #expect(again.status == failed.status)
        }
    }
}

/// A log handler that keeps every line it is given, for reading back in a test.
final class LogLines: LogHandler, Sendable {
    private let lines = Mutex([String]())
    var all: [String] { lines.withLock { $0 } }

    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " ")
        lines.withLock { $0.append("\(event.level) \(event.message) \(fields)") }
    }
}

/// Connections that never finish a request (issue #13, attack 3), against a live server. The
/// old server held every one of them open for ever; 20,000 stopped `/healthz`.
@Suite("hostile connections")
struct HostileConnectionTests {
    static let helper = Fixtures.packageRoot.appendingPathComponent("Tests/Helpers/half_open.py").path

    /// Runs the helper: `count` half-open sockets held `hold` seconds at most, or until `until`
    /// have been refused or closed; its JSON report.
    static func halfOpen(port: Int, count: Int, hold: Double, until: Int) async throws -> [String: Any] {
        let result = try await Tool.run("python3", [helper, String(port), String(count), String(hold), String(until)])
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stderr)")
    }

    static func health(port: Int, from source: String) async throws -> String {
        try await Tool.run("curl", ["-s", "--max-time", "5", "--interface", source, "-o", "/dev/null",
                                    "-w", "%{http_code}", "http://127.0.0.1:\(port)/healthz"]).stdout
    }

    @Test("400 half-open sockets from one address: past the cap of 300 each is answered 503 at once; another address is served")
    func perAddressCap() async throws {
        let app = try await buildApplication(try testConfiguration {
            $0.headerTimeoutSeconds = 120 // nothing times out during the test: only the cap acts
            $0.maxConnectionsPerAddress = 300
        })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            async let flood = Self.halfOpen(port: port, count: 400, hold: 30, until: 100)
            try await Task.sleep(for: .seconds(2))
            // An honest client from another address (the whole of 127/8 is loopback).
            #expect(try await Self.health(port: port, from: "127.0.0.2") == "200")
            let report = try await flood
            // 300 admitted, one fewer while the test client holds a connection of its own.
            #expect((100...101).contains(report["refused"] as? Int ?? 0) && report["closed"] as? Int == 0, "\(report)")
            #expect((report["last_close_s"] as? Double ?? 99) < 30, "the helper gave up waiting for refusals: \(report)")
            // The helper has closed its sockets: the address is served again.
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await Self.health(port: port, from: "127.0.0.1") == "200")
        }
    }

    @Test("a socket that never finishes its request head is closed after the header timeout, unanswered")
    func headerTimeout() async throws {
        let app = try await buildApplication(try testConfiguration { $0.headerTimeoutSeconds = 2 })
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let report = try await Self.halfOpen(port: port, count: 50, hold: 40, until: 50)
            #expect(report["closed"] as? Int == 50 && report["refused"] as? Int == 0, "\(report)")
            let first = report["first_close_s"] as? Double ?? 0, last = report["last_close_s"] as? Double ?? 99
            #expect(first >= 1.9 && last < 40, "\(report)")
        }
    }
}
