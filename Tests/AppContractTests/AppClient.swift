import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HummingbirdWSClient
import Logging
import NIOCore
import Synchronization

/// Makes the calls the seed app makes, the way it makes them: URLSession, JSON bodies, Bearer
/// tokens, `multipart/form-data` uploads, media loaded with no header at all.
struct AppClient: Sendable {
    let base: String

    struct Reply: Sendable {
        var status: Int
        var data: Data
        var headers: [String: String]

        /// Decodes the body as the app would, failing the test with the body in view.
        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            do {
                return try JSONDecoder().decode(T.self, from: data)
            } catch {
                throw ContractFailure("\(T.self) does not decode (\(error)) from \(String(decoding: data, as: UTF8.self))")
            }
        }

        var text: String { String(decoding: data, as: UTF8.self) }
    }

    func call(_ method: String, _ path: String, token: String? = nil, json: [String: Any]? = nil,
              jsonHeaderWithoutBody: Bool = false, headers: [String: String] = [:]) async throws -> Reply {
        let url = path.hasPrefix("http") ? URL(string: path)! : URL(string: base + path)!
        var request = URLRequest(url: url)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let json {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
        } else if jsonHeaderWithoutBody {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        return try await send(request)
    }

    /// `FileUploadService.uploadFile`: the article's multipart body, field `file`.
    func upload(_ data: Data, filename: String, mimeType: String, token: String) async throws -> Reply {
        var request = URLRequest(url: URL(string: base + "/api/upload-file")!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let boundary = "Boundary-\(UUID().uuidString)"
        request.setValue("multipart/form-data; boundary=\(boundary)", forHTTPHeaderField: "Content-Type")
        var body = Data()
        body.append(Data("--\(boundary)\r\n".utf8))
        body.append(Data("Content-Disposition: form-data; name=\"file\"; filename=\"\(filename)\"\r\n".utf8))
        body.append(Data("Content-Type: \(mimeType)\r\n\r\n".utf8))
        body.append(data)
        body.append(Data("\r\n--\(boundary)--\r\n".utf8))
        request.httpBody = body
        return try await send(request)
    }

    private func send(_ request: URLRequest) async throws -> Reply {
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { headers[name.lowercased()] = value }
        }
        return Reply(status: http.statusCode, data: data, headers: headers)
    }
}

struct ContractFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The app's socket: `ws://host:port/ws/chat/<roomId>?token=<access>`, every frame sent as a
/// binary message of UTF-8 JSON. Frames received are kept as text and decoded by the test with
/// the app's models.
final class AppSocket: Sendable {
    /// Mutable state a connection task shares with the test (a `Mutex` cannot be copied into one).
    final class Locked<Value: Sendable>: Sendable {
        let mutex: Mutex<Value>
        init(_ value: Value) { mutex = Mutex(value) }
        func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R { try mutex.withLock { try body(&$0) } }
    }

    private let frames = Locked<[String]>([])
    /// The text of the frame `next` returned last, for reading it as other clients would.
    private let taken = Locked<String?>(nil)
    private let writer = Locked<WebSocketOutboundWriter?>(nil)
    private let task: Task<WebSocketCloseFrame?, any Error>

    init(port: Int, roomId: String, token: String) async throws {
        let frames = self.frames, writer = self.writer
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Bool.self)
        task = Task {
            defer { readyContinuation.finish() }
            return try await WebSocketClient.connect(
                url: "ws://127.0.0.1:\(port)/ws/chat/\(roomId)?token=\(token)", logger: Logger(label: "app-socket")
            ) { inbound, outbound, _ in
                writer.withLock { $0 = outbound }
                readyContinuation.yield(true)
                for try await message in inbound.messages(maxSize: 1 << 20) {
                    switch message {
                    case .text(let text): frames.withLock { $0.append(text) }
                    case .binary(let buffer): frames.withLock { $0.append(String(buffer: buffer)) }
                    }
                }
            }
        }
        var connected = false
        for await value in ready { connected = value; break }
        guard connected else {
            _ = try await task.value
            throw ContractFailure("the WebSocket upgrade was refused")
        }
    }

    func send(_ object: [String: Any]) async throws {
        guard let outbound = writer.withLock({ $0 }) else { throw ContractFailure("not connected") }
        try await outbound.write(.binary(ByteBuffer(data: try JSONSerialization.data(withJSONObject: object))))
    }

    /// Removes and returns the first frame whose `type` is `type` and that `matching` accepts,
    /// decoded as `T`; waits up to 15 s.
    func next<T: Decodable>(_ type: String, as: T.Type, matching: (T) -> Bool = { _ in true }) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(15)
        while true {
            let found: T? = try frames.withLock { frames in
                for (index, text) in frames.enumerated() {
                    guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                          object["type"] as? String == type else { continue }
                    let decoded: T
                    do {
                        decoded = try JSONDecoder().decode(T.self, from: Data(text.utf8))
                    } catch {
                        throw ContractFailure("a \(type) frame does not decode as \(T.self) (\(error)): \(text)")
                    }
                    if matching(decoded) {
                        taken.withLock { $0 = text }
                        frames.remove(at: index)
                        return decoded
                    }
                }
                return nil
            }
            if let found { return found }
            guard ContinuousClock.now < deadline else {
                throw ContractFailure("no matching \(type) frame within 15 s; have \(frames.withLock { $0 })")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The frame `next` returned last, as a JSON object.
    func lastTaken() -> [String: Any]? {
        taken.withLock { $0 }.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func close() async throws {
        if let outbound = writer.withLock({ $0 }) { try? await outbound.close(.goingAway, reason: nil) }
        _ = try? await task.value
    }

    /// Waits for the server to close the socket; its close frame. Throws after 20 s: a test must
    /// fail, not hang the run.
    func waitForClose() async throws -> WebSocketCloseFrame? {
        let task = self.task
        return try await withThrowingTaskGroup(of: WebSocketCloseFrame?.self) { group in
            group.addTask { try await task.value }
            group.addTask {
                try await Task.sleep(for: .seconds(20))
                throw ContractFailure("the server did not close the socket within 20 s")
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }
}
