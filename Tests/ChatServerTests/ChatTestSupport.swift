import ChatServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import HummingbirdWSClient
import Logging
import MediagateTestSupport
import NIOCore
import Synchronization
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

/// A configuration for one test: its own data directory, a cheap bcrypt cost, a free port.
func testConfiguration(_ adjust: (inout ChatConfiguration) -> Void = { _ in }) throws -> ChatConfiguration {
    var configuration = ChatConfiguration()
    configuration.dataDirectory = try Fixtures.temporaryDirectory("chat").path
    configuration.port = 0
    configuration.passwordHashCost = 4
    adjust(&configuration)
    return configuration
}

/// A JSON response: status, headers and the decoded body.
struct JSONResponse: @unchecked Sendable {
    // @unchecked: the body is a JSONSerialization tree, read only after decoding.
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var body: Any?

    var object: [String: Any] { body as? [String: Any] ?? [:] }
    var array: [[String: Any]] { body as? [[String: Any]] ?? [] }
    var errorCode: String? { (object["error"] as? [String: Any])?["code"] as? String }
}

extension TestClientProtocol {
    /// Sends `body` as JSON (with `token` as a Bearer token) and decodes the JSON answer.
    func call(_ method: HTTPRequest.Method, _ uri: String, token: String? = nil, json body: Any? = nil,
              contentType: String = "application/json") async throws -> JSONResponse {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        var buffer: ByteBuffer?
        if let body {
            headers[.contentType] = contentType
            buffer = ByteBuffer(data: try JSONSerialization.data(withJSONObject: body))
        }
        let response = try await executeRequest(uri: uri, method: method, headers: headers, body: buffer)
        let data = Data(buffer: response.body)
        let decoded = data.isEmpty ? nil : try? JSONSerialization.jsonObject(with: data)
        return JSONResponse(status: response.status, headers: response.headers, body: decoded)
    }

    /// Registers `name` and returns the access and refresh tokens.
    func register(_ name: String, password: String = "correct horse") async throws -> (access: String, refresh: String, id: Int) {
        let response = try await call(.post, "/api/auth/register", json: ["username": name, "password": password])
        #expect(response.status == .created, "register \(name): \(response.object)")
        let user = response.object["user"] as? [String: Any]
        return (response.object["access_token"] as? String ?? "", response.object["refresh_token"] as? String ?? "",
                (user?["id"] as? String).flatMap { Int($0) } ?? 0)
    }

    /// Creates a room as `token`'s user and returns its id.
    func createRoom(_ name: String, token: String, isPrivate: Bool = false, members: [String] = []) async throws -> Int {
        let response = try await call(.post, "/api/rooms", token: token, json: ["name": name, "is_private": isPrivate, "members": members])
        #expect(response.status == .ok)
        return response.object["id"] as? Int ?? 0
    }
}

/// One JSON frame from the server.
struct Frame: @unchecked Sendable, CustomStringConvertible {
    // @unchecked: a JSONSerialization tree, never mutated after parsing.
    let fields: [String: Any]
    subscript(key: String) -> Any? { fields[key] }
    var description: String { "\(fields)" }
}

/// Frames received on a test WebSocket, waited for by type.
actor FrameInbox {
    private var frames: [Frame] = []
    private(set) var closed = false

    func append(_ text: String) {
        if let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] {
            frames.append(Frame(fields: object))
        }
    }

    func finish() { closed = true }

    /// Removes and returns the first frame of `type` (and matching `where`), waiting up to `timeout`.
    ///
    /// The time limit only bounds a failure, so it is generous, and the inbox is looked at once
    /// more after it: a test woken late (the machine busy with the tests beside it) must not
    /// fail with the frame it waited for already in its inbox.
    func next(_ type: String, timeout: Duration = .seconds(15),
              where predicate: @Sendable (Frame) -> Bool = { _ in true }) async throws -> Frame {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let index = frames.firstIndex(where: { $0["type"] as? String == type && predicate($0) }) {
                return frames.remove(at: index)
            }
            guard ContinuousClock.now < deadline else { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TimeoutError(description: "no \(type) frame within \(timeout); have \(frames)")
    }

    func all(_ type: String) -> [Frame] { frames.filter { $0["type"] as? String == type } }
}

/// Holds the outbound writer once the client has connected.
final class WriterBox: Sendable {
    let value = Mutex<WebSocketOutboundWriter?>(nil)
}

struct TimeoutError: Error, CustomStringConvertible {
    var description: String
}

/// A real WebSocket client (swift-websocket's) connected to the live test server.
final class TestSocket: Sendable {
    let inbox = FrameInbox()
    private let writer = WriterBox()
    private let task: Task<WebSocketCloseFrame?, any Error>

    /// Connects and waits for the upgrade; throws if the server refuses it.
    init(port: Int, path: String) async throws {
        let inbox = self.inbox
        let writer = self.writer
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Bool.self)
        task = Task {
            defer { readyContinuation.finish() }
            do {
                // Frames up to 1 MiB, the server's own limit (the client's default is 16 KiB).
                return try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)\(path)", configuration: .init(maxFrameSize: 1 << 20),
                                                         logger: Logger(label: "test-ws")) { inbound, outbound, _ in
                    writer.value.withLock { $0 = outbound }
                    readyContinuation.yield(true)
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        if case .text(let text) = message { await inbox.append(text) }
                    }
                    await inbox.finish()
                }
            } catch {
                await inbox.finish()
                throw error
            }
        }
        var connected = false
        for await value in ready { connected = value; break }
        if !connected {
            _ = try await task.value
            throw TimeoutError(description: "the WebSocket upgrade was refused")
        }
        // The server's welcome: from here on, the room's frames reach this socket.
        _ = try await inbox.next("connected")
    }

    func send(_ object: [String: Any]) async throws {
        let text = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        try await sendText(text)
    }

    func sendText(_ text: String) async throws {
        guard let outbound = writer.value.withLock({ $0 }) else { throw TimeoutError(description: "not connected") }
        try await outbound.write(.text(text))
    }

    /// Closes from this end and waits (bounded) for the server's close.
    func close() async throws -> WebSocketCloseFrame? {
        if let outbound = writer.value.withLock({ $0 }) { try? await outbound.close(.normalClosure, reason: nil) }
        return try await waitForClose()
    }

    /// Waits for the server to close the connection, returning its close frame; throws after
    /// `timeout` (a test must fail, not hang the run).
    func waitForClose(timeout: Duration = .seconds(20)) async throws -> WebSocketCloseFrame? {
        let task = self.task
        return try await withThrowingTaskGroup(of: WebSocketCloseFrame?.self) { group in
            group.addTask { try await task.value }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw TimeoutError(description: "the server did not close the socket within \(timeout)")
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }
}
