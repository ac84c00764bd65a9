@testable import ChatServer
import Foundation
import MediagateTestSupport
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

@Suite("configuration and fan-out")
struct ConfigurationAndHubTests {
    @Test("a config file, then the environment, override the defaults")
    func layering() throws {
        let file = try Fixtures.temporaryDirectory("config").appendingPathComponent("mediagate.json")
        try Data(#"{"port": 9001, "dataDirectory": "/srv/mediagate", "allowRegistration": true, "maxMessageLength": 500}"#.utf8).write(to: file)
        var configuration = try ChatConfiguration.load(file: file.path)
        #expect(configuration.port == 9001 && configuration.maxMessageLength == 500)
        #expect(configuration.host == "127.0.0.1") // untouched default
        configuration.apply(environment: ["MEDIAGATE_PORT": "9002", "MEDIAGATE_ALLOW_REGISTRATION": "false"])
        #expect(configuration.port == 9002 && !configuration.allowRegistration)
        #expect(configuration.dataDirectory == "/srv/mediagate")
        try configuration.validate()
    }

    @Test("bad configuration is refused at start-up", arguments: [
        #"{"port": 70000}"#, #"{"passwordHashCost": 2}"#, #"{"accessTokenSeconds": 0}"#, #"{"port": "eighty"}"#, "not json",
    ])
    func badConfiguration(text: String) throws {
        let file = try Fixtures.temporaryDirectory("config").appendingPathComponent("bad.json")
        try Data(text.utf8).write(to: file)
        #expect(throws: (any Error).self) { try ChatConfiguration.load(file: file.path).validate() }
    }

    @Test("a socket that stops reading is dropped once its queue is full, not buffered without bound")
    func slowConsumer() async throws {
        let connection = ChatConnection(user: User(id: 1, username: "slow"), roomId: 1, session: nil, maxQueuedFrames: 16)
        var accepted = 0
        for n in 0..<100 where connection.send("frame \(n)") { accepted += 1 }
        #expect(accepted == 16)
        #expect(connection.reason == .tooSlow)
        // What was queued is still delivered, then the stream ends (and the socket closes with 4008).
        var drained = 0
        for await _ in connection.outbox { drained += 1 }
        #expect(drained == 16)
        #expect(!connection.send("after"))
    }

    @Test("the hub drops only the slow socket; the others keep receiving")
    func hubDropsSlowSocket() async throws {
        let hub = ChatHub(typingTimeout: .seconds(1))
        let slow = ChatConnection(user: User(id: 1, username: "slow"), roomId: 7, session: nil, maxQueuedFrames: 16)
        let fast = ChatConnection(user: User(id: 2, username: "fast"), roomId: 7, session: nil, maxQueuedFrames: 1024)
        await hub.join(slow)
        await hub.join(fast)
        for n in 0..<100 { await hub.broadcast("m\(n)", roomId: 7) }
        #expect(slow.reason == .tooSlow)
        #expect(fast.reason == nil)
        let reached = await hub.broadcast("last", roomId: 7)
        #expect(reached == [2])
    }
}
