@testable import ChatServer
import Foundation
import NIOCore
import NIOEmbedded
import NIOWebSocket
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

    /// A connection writing to a NIO channel that keeps what is written (no socket under it),
    /// on an event loop of its own that runs what it is handed when told to.
    /// Its pipeline holds NIO's frame encoder, as a live socket's does: the sink writes the framed
    /// bytes below it, the way the server writes them.
    static func connection(_ id: Int64, room: Int64 = 7, maxQueuedFrames: Int) async throws -> (ChatConnection, NIOAsyncTestingChannel) {
        let channel = try await NIOAsyncTestingChannel { try $0.pipeline.syncOperations.addHandler(WebSocketFrameEncoder()) }
        let sink = ChannelFrameSink(channel: channel, maxQueuedFrames: maxQueuedFrames)
        return (ChatConnection(user: User(id: id, username: "user\(id)"), roomId: room, session: nil, sink: sink), channel)
    }

    /// The texts of the frames written so far, read back from the bytes on the wire.
    static func written(_ channel: NIOAsyncTestingChannel) async throws -> [String] {
        await channel.testingEventLoop.run()
        var texts: [String] = []
        while var bytes = try await channel.readOutbound(as: ByteBuffer.self) {
            let first = bytes.readInteger(as: UInt8.self), short = bytes.readInteger(as: UInt8.self) ?? 0
            #expect(first == 0x81, "final text frames")
            switch short {
            case 126: _ = bytes.readInteger(as: UInt16.self)
            case 127: _ = bytes.readInteger(as: UInt64.self)
            default: break
            }
            texts.append(String(buffer: bytes))
        }
        return texts
    }

    @Test("a socket that stops reading is dropped once its queue is full, not buffered without bound")
    func slowConsumer() async throws {
        let (connection, channel) = try await Self.connection(1, maxQueuedFrames: 16)
        // While the channel takes writes, nothing is counted against the client.
        for n in 0..<1000 { #expect(connection.send("early \(n)")) }
        #expect(try await Self.written(channel).count == 1000)
        // Past the channel's high-water mark: 16 more frames, then the connection closes as too slow.
        channel.isWritable = false
        for n in 0..<100 { connection.send("frame \(n)") }
        #expect(try await Self.written(channel) == (0..<16).map { "frame \($0)" })
        #expect(connection.reason == .tooSlow)
        #expect(!connection.send("after"))
        #expect(await connection.closed() == .tooSlow)
    }

    @Test("the hub drops only the slow socket; the others keep receiving, in order")
    func hubDropsSlowSocket() async throws {
        let hub = ChatHub(typingTimeout: .seconds(1))
        let (slow, slowChannel) = try await Self.connection(1, maxQueuedFrames: 16)
        let (fast, fastChannel) = try await Self.connection(2, maxQueuedFrames: 16)
        await hub.join(slow)
        await hub.join(fast)
        slowChannel.isWritable = false
        for n in 0..<100 { await hub.broadcast("m\(n)", roomId: 7) }
        await slowChannel.testingEventLoop.run()
        #expect(slow.reason == .tooSlow)
        #expect(fast.reason == nil)
        #expect(try await Self.written(slowChannel).count == 16)
        #expect(try await Self.written(fastChannel) == (0..<100).map { "m\($0)" })
        let reached = await hub.broadcast("last", roomId: 7)
        #expect(reached == [2])
    }

    @Test("a frame encoded once is byte for byte what NIO's WebSocket encoder writes, at every length boundary",
          arguments: [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
    func encodedOnce(length: Int) throws {
        let text = ByteBuffer(repeating: UInt8(ascii: "a"), count: length)
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        try channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: text)).wait()
        var expected = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { expected.writeBuffer(&part) }
        #expect(OutboundFrame(text).wire == expected)
        #expect(OutboundFrame(text).text == text)
    }
}
