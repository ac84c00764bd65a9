import ChatServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import JWTKit
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

@Suite("accounts and tokens")
struct AuthTests {
    @Test("register, log in, refresh, log out")
    func lifecycle() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            let health = try await client.call(.get, "/healthz")
            #expect(health.status == .ok)

            let registered = try await client.call(.post, "/api/auth/register", json: ["username": "alice", "password": "correct horse"])
            #expect(registered.status == .created)
            #expect(registered.object["token_type"] as? String == "bearer")
            #expect(registered.object["expires_in"] as? Int == 900)
            #expect((registered.object["user"] as? [String: Any])?["username"] as? String == "alice")
            #expect((registered.object["user"] as? [String: Any])?["id"] as? String == "1", "ids are strings, as the seed app decodes them")

            // The seed app's sign-up answers 200 with the same body; its login is case-exact.
            let signup = try await client.call(.post, "/api/auth/signup", json: ["username": "Bert", "password": "correct horse"])
            #expect(signup.status == .ok && signup.object["access_token"] is String)
            #expect(try await client.call(.post, "/api/auth/signup", json: ["username": "bert", "password": "correct horse"]).status == .conflict)
            #expect(try await client.call(.post, "/api/auth/login", json: ["username": "bert", "password": "correct horse"]).status == .unauthorized)
            #expect(try await client.call(.post, "/api/auth/login", json: ["username": "Bert", "password": "correct horse"]).status == .ok)

            let login = try await client.call(.post, "/api/auth/login", json: ["username": "alice", "password": "correct horse"])
            #expect(login.status == .ok)
            let access = try #require(login.object["access_token"] as? String)
            let refresh = try #require(login.object["refresh_token"] as? String)
            #expect(try await client.call(.get, "/api/rooms", token: access).status == .ok)
            let me = try await client.call(.get, "/api/auth/me", token: access)
            #expect(me.object["id"] as? String == "1" && me.object["username"] as? String == "alice")

            let refreshed = try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": refresh])
            #expect(refreshed.status == .ok)
            let nextRefresh = try #require(refreshed.object["refresh_token"] as? String)
            #expect(nextRefresh != refresh)
            #expect(refreshed.object["access_token"] is String)

            let logout = try await client.call(.post, "/api/auth/logout", token: access, json: ["refresh_token": nextRefresh])
            #expect(logout.status == .noContent)
            let afterLogout = try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": nextRefresh])
            #expect(afterLogout.status == .unauthorized)
            #expect(afterLogout.errorCode == "unauthorized")
        }
    }

    @Test("a spent refresh token presented again within the grace window gets the same successor, later it revokes its whole family")
    func reuseRevokesFamily() async throws {
        // A window wide enough for a loaded machine to replay inside it, short enough to wait out.
        let app = try await buildApplication(try testConfiguration { $0.refreshReuseGraceSeconds = 8 })
        try await app.test(.router) { client in
            let first = try await client.register("bob").refresh
            let second = try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": first])
            let secondToken = try #require(second.object["refresh_token"] as? String)
            // A parallel refresh with the same token, inside the grace window: the same successor.
            let parallel = try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": first])
            #expect(parallel.status == .ok)
            #expect(parallel.object["refresh_token"] as? String == secondToken)
            try await Task.sleep(for: .seconds(9))
            // The stolen copy of `first` comes back after the window.
            let replay = try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": first])
            #expect(replay.status == .unauthorized)
            let message = (replay.object["error"] as? [String: Any])?["message"] as? String
            #expect(message?.contains("revoked") == true)
            // The legitimate holder's newer token is dead too.
            #expect(try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": secondToken]).status == .unauthorized)
            // Another login of the same user is a different family and still works.
            let login = try await client.call(.post, "/api/auth/login", json: ["username": "bob", "password": "correct horse"])
            let other = try #require(login.object["refresh_token"] as? String)
            #expect(try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": other]).status == .ok)
        }
    }

    @Test("bad registrations and logins get the right status and a JSON error")
    func badInput() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.router) { client in
            _ = try await client.register("carol")
            let taken = try await client.call(.post, "/api/auth/register", json: ["username": "CAROL", "password": "another one"])
            #expect(taken.status == .conflict && taken.errorCode == "conflict")
            let shortPassword = try await client.call(.post, "/api/auth/register", json: ["username": "dave", "password": "short"])
            #expect(shortPassword.status == .unprocessableContent)
            let badName = try await client.call(.post, "/api/auth/register", json: ["username": "../etc", "password": "long enough"])
            #expect(badName.status == .unprocessableContent)
            let missingKey = try await client.call(.post, "/api/auth/login", json: ["username": "carol"])
            #expect(missingKey.status == .badRequest && missingKey.errorCode == "bad_request")
            let notJSON = try await client.call(.post, "/api/auth/login", json: ["username": "carol"], contentType: "text/plain")
            #expect(notJSON.status == .unsupportedMediaType)
            let wrong = try await client.call(.post, "/api/auth/login", json: ["username": "carol", "password": "wrong password"])
            #expect(wrong.status == .unauthorized)
            let nobody = try await client.call(.post, "/api/auth/login", json: ["username": "nobody", "password": "wrong password"])
            #expect(nobody.status == .unauthorized)
            let garbage = try await client.call(.post, "/api/auth/refresh", json: ["refresh_token": "garbage"])
            #expect(garbage.status == .unauthorized)
        }
    }

    @Test("registration can be turned off")
    func registrationOff() async throws {
        let app = try await buildApplication(try testConfiguration { $0.allowRegistration = false })
        try await app.test(.router) { client in
            let response = try await client.call(.post, "/api/auth/register", json: ["username": "eve", "password": "long enough"])
            #expect(response.status == .forbidden)
        }
    }

    @Test("failed logins are throttled per user")
    func throttle() async throws {
        let app = try await buildApplication(try testConfiguration { $0.maxFailedLoginsPerUser = 3 })
        try await app.test(.router) { client in
            _ = try await client.register("frank")
            for _ in 0..<3 {
                let wrong = try await client.call(.post, "/api/auth/login", json: ["username": "frank", "password": "wrong password"])
                #expect(wrong.status == .unauthorized)
            }
            let throttled = try await client.call(.post, "/api/auth/login", json: ["username": "frank", "password": "correct horse"])
            #expect(throttled.status == .tooManyRequests)
            #expect(throttled.headers[.retryAfter].flatMap(Int.init).map { $0 > 0 } == true)
        }
    }

    @Test("failed logins are throttled per client address too, across user names")
    func throttlePerAddress() async throws {
        let app = try await buildApplication(try testConfiguration { $0.maxFailedLoginsPerAddress = 3 })
        try await app.test(.router) { client in
            _ = try await client.register("grace")
            for name in ["a1", "a2", "a3"] {
                let wrong = try await client.call(.post, "/api/auth/login", json: ["username": name, "password": "wrong password"])
                #expect(wrong.status == .unauthorized)
            }
            let throttled = try await client.call(.post, "/api/auth/login", json: ["username": "grace", "password": "correct horse"])
            #expect(throttled.status == .tooManyRequests)
        }
    }

    @Test("missing, forged and expired tokens get 401 on every protected route")
    func protectedRoutes() async throws {
        let configuration = try testConfiguration()
        let app = try await buildApplication(configuration)
        try await app.test(.router) { client in
            let alice = try await client.register("alice")
            let room = try await client.createRoom("general", token: alice.access)
            // Signed with the right key but expired an hour ago.
            let keys = JWTKeyCollection()
            let key = try Data(contentsOf: URL(fileURLWithPath: configuration.dataDirectory).appendingPathComponent("jwt-signing-key"))
            await keys.add(hmac: HMACKey(key: .init(data: key)), digestAlgorithm: .sha256)
            let expired = try await keys.sign(TestClaims(sub: .init(value: String(alice.id)), name: "alice",
                                                         exp: .init(value: Date().addingTimeInterval(-3600)),
                                                         iat: .init(value: Date().addingTimeInterval(-4000)), typ: "access"))
            // Valid shape, signed with another key.
            let otherKeys = JWTKeyCollection()
            await otherKeys.add(hmac: HMACKey(from: String(repeating: "k", count: 64)), digestAlgorithm: .sha256)
            let forged = try await otherKeys.sign(TestClaims(sub: .init(value: String(alice.id)), name: "alice",
                                                             exp: .init(value: Date().addingTimeInterval(3600)),
                                                             iat: .init(value: Date()), typ: "access"))
            let routes: [(HTTPRequest.Method, String)] = [
                (.get, "/api/rooms"), (.post, "/api/rooms"), (.get, "/api/rooms/\(room)"), (.post, "/api/rooms/\(room)/join"),
                (.post, "/api/rooms/\(room)/leave"), (.get, "/api/rooms/\(room)/members"), (.post, "/api/rooms/\(room)/members"),
                (.get, "/api/messages?room_id=\(room)"), (.post, "/api/messages"), (.post, "/api/auth/logout"),
            ]
            for (method, path) in routes {
                for token in [nil, "garbage", forged, expired, alice.refresh] {
                    let response = try await client.call(method, path, token: token, json: method == .post ? ["x": 1] : nil)
                    #expect(response.status == .unauthorized, "\(method) \(path) with \(token?.prefix(12) ?? "no token")")
                    #expect(response.errorCode == "unauthorized")
                }
            }
        }
    }
}

struct TestClaims: JWTPayload {
    var sub: SubjectClaim
    var name: String
    var exp: ExpirationClaim
    var iat: IssuedAtClaim
    var typ: String

    func verify(using algorithm: some JWTAlgorithm) throws {}
}
