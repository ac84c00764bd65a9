@testable import ChatServer
import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import MediagateTestSupport
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing
@testable import MediagateCore
@testable import MediagateDiskStorage
@testable import MediagateSQLite
import MediagateWire

/// `CachedThumbnailHandler`: signed thumbnails held in memory are answered before the router,
/// with the router's answer; everything else reaches the router unchanged and in order.
@Suite("cached thumbnails on the channel")
struct CachedThumbnailTests {
    /// A stored photo (its 320 px thumbnail left in memory by upload completion, its record
    /// read as a posted message's attachment is) and a channel holding the handler.
    static func setUp() async throws -> (services: ChatServices, file: StoredFile, channel: EmbeddedChannel) {
        let services = try await ChatServices(configuration: try testConfiguration())
        let alice = try await services.addUser(username: "alice", password: "correct horse")
        let source = try Fixtures.temporaryDirectory("cached-thumbnail").appendingPathComponent("p.jpg").path
        try FileManager.default.copyItem(atPath: Fixtures.media("photo-exif-orientation-6.jpg"), toPath: source)
        let stored = try await services.ingest.storeFile(at: source, filename: "p.jpg", ownerId: alice.id, uploadId: nil)
        _ = try await services.fileStore.file(id: stored.id)
        let handler = CachedThumbnailHandler(files: services.fileStore, thumbnails: services.thumbnails,
                                             signer: services.urlSigner, logger: Logger(label: "test"))
        return (services, stored, EmbeddedChannel(handler: handler))
    }

    static func send(_ channel: EmbeddedChannel, _ path: String, method: HTTPRequest.Method = .get, headers: HTTPFields = [:]) throws {
        try channel.writeInbound(HTTPRequestPart.head(HTTPRequest(method: method, scheme: "http", authority: "127.0.0.1",
                                                                  path: path, headerFields: headers)))
        try channel.writeInbound(HTTPRequestPart.end(nil))
    }

    /// The router's side: the request the handler passed on, then an answer written back through it.
    static func routerAnswers(_ channel: EmbeddedChannel, _ path: String) throws {
        guard case .head(let forwarded) = try channel.readInbound(as: HTTPRequestPart.self) else {
            Issue.record("\(path) did not reach the router")
            return
        }
        #expect(forwarded.path == path)
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == .end(nil))
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == nil, "\(path) was answered before the router")
        try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .notFound)))
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == .head(HTTPResponse(status: .notFound)))
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == .end(nil))
    }

    /// The head and body the handler wrote for a request it answered.
    static func answer(_ channel: EmbeddedChannel) throws -> (HTTPResponse, ByteBuffer)? {
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil, "the router saw a request answered on the channel")
        guard case .head(let head) = try channel.readOutbound(as: HTTPResponsePart.self),
              case .body(let body) = try channel.readOutbound(as: HTTPResponsePart.self),
              case .end(nil) = try channel.readOutbound(as: HTTPResponsePart.self) else { return nil }
        return (head, body)
    }

    @Test("a signed thumbnail held in memory is answered on the channel, with the controller's headers")
    func hit() async throws {
        let (services, file, channel) = try await Self.setUp()
        let signed = services.urlSigner.sign("/api/files/\(file.id)/thumbnail", fileId: file.id, variant: "thumbnail")
        let kept = try #require(services.thumbnails.inMemory(sha256: file.sha256, AttachmentIngest.eagerThumbnail))
        for _ in 0..<2 { // twice on one connection: the second comes from the cached signature check
            try Self.send(channel, signed)
            let (head, body) = try #require(try Self.answer(channel))
            #expect(head.status == .ok)
            #expect(body == kept.bytes)
            var expected = FileController.thumbnailHeaders(format: .jpeg, name: kept.name, variesByAccept: true)
            expected[.contentLength] = String(kept.bytes.readableBytes)
            expected[.server] = "mediagate"
            var got = head.headerFields
            #expect(got[.date]?.hasSuffix(" GMT") == true)
            got[.date] = nil
            #expect(got == expected)
        }
        // Accept picks WebP: not made yet, so the router makes it.
        try Self.send(channel, signed, headers: [.accept: "image/webp"])
        try Self.routerAnswers(channel, signed)
        // An explicit format and size that upload completion made are answered here too.
        try Self.send(channel, signed + "&w=300&h=320&format=jpeg")
        #expect(try Self.answer(channel)?.0.headerFields[.vary] == nil)
    }

    @Test("anything else reaches the router unchanged, and nothing is answered ahead of a request still open")
    func passesOn() async throws {
        let (services, file, channel) = try await Self.setUp()
        let thumbnail = "/api/files/\(file.id)/thumbnail"
        let signer = services.urlSigner
        let signed = signer.sign(thumbnail, fileId: file.id, variant: "thumbnail")
        let expired = signer.sign(thumbnail, fileId: file.id, variant: "thumbnail", now: Date() - signer.lifetime - 60)
        let original = signer.sign("/api/files/\(file.id)", fileId: file.id, variant: "original")
        let originalQuery = String(original.split(separator: "?")[1])
        let cases: [(String, HTTPRequest.Method, HTTPFields)] = [
            (thumbnail, .get, [.authorization: "Bearer not-a-signature"]),
            (signed.replacingOccurrences(of: "sig=", with: "sig=A"), .get, [:]),
            (expired, .get, [:]),
            ("\(thumbnail)?\(originalQuery)", .get, [:]),             // the file's signature, not the thumbnail's
            (signed + "&w=96", .get, [:]),                            // not made yet
            (signed + "&w=0", .get, [:]),                             // the router's 400
            (signed + "&fit=stretch", .get, [:]),
            (signed, .head, [:]),
            (signed, .get, [.ifNoneMatch: "\"\(file.sha256)\""]),    // the router decides 304 or 200
            (signed, .get, [.connection: "close"]),
            (original, .get, [:]),                                    // the file itself
            ("/api/files/no-such-file/thumbnail?\(signed.split(separator: "?")[1])", .get, [:]),
            ("/api/files/\(file.id)/thumbnail/extra?\(signed.split(separator: "?")[1])", .get, [:]),
        ]
        for (path, method, headers) in cases {
            try Self.send(channel, path, method: method, headers: headers)
            try Self.routerAnswers(channel, path)
        }

        // Pipelined: a miss the router is still answering, then a hit. The hit must wait its
        // turn behind the miss, so it goes to the router as well.
        try Self.send(channel, signed + "&w=96")
        try Self.send(channel, signed)
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == nil)
        for path in [signed + "&w=96", signed] {
            guard case .head(let forwarded) = try channel.readInbound(as: HTTPRequestPart.self) else {
                Issue.record("\(path) did not reach the router")
                continue
            }
            #expect(forwarded.path == path)
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == .end(nil))
        }
        for _ in 0..<2 {
            try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: .ok)))
            try channel.writeOutbound(HTTPResponsePart.end(nil))
        }
        while try channel.readOutbound(as: HTTPResponsePart.self) != nil {}
        // Both answered: the next hit is the handler's again.
        try Self.send(channel, signed)
        #expect(try Self.answer(channel)?.0.status == .ok)
        #expect(try channel.finish().isClean)
    }

    @Test("a remembered signature still expires, and a tampered one is still refused")
    func rememberedSignatures() async throws {
        let signer = URLSigner(current: Data(repeating: 7, count: 64), previous: nil, lifetime: 60)
        let now = Date()
        let url = signer.sign("/api/files/f/thumbnail", fileId: "f", variant: "thumbnail", now: now)
        let query = url.split(separator: "?")[1].split(separator: "&").map { $0.split(separator: "=", maxSplits: 1).map(String.init) }
        let expiry = query[0][1], signature = query[1][1]
        #expect(signer.verify(fileId: "f", variant: "thumbnail", expiry: expiry, signature: signature, now: now) == .valid)
        #expect(signer.verify(fileId: "f", variant: "thumbnail", expiry: expiry, signature: signature, now: now + 30) == .valid)
        #expect(signer.verify(fileId: "f", variant: "thumbnail", expiry: expiry, signature: signature, now: now + 120) == .expired)
        #expect(signer.verify(fileId: "f", variant: "original", expiry: expiry, signature: signature, now: now) == .invalid)
        #expect(signer.verify(fileId: "g", variant: "thumbnail", expiry: expiry, signature: signature, now: now) == .invalid)
        #expect(signer.verify(fileId: "f", variant: "thumbnail", expiry: String(Int(expiry)! + 1000), signature: signature, now: now) == .invalid)
        let tampered = (signature.first == "A" ? "B" : "A") + signature.dropFirst() // one character changed
        #expect(signer.verify(fileId: "f", variant: "thumbnail", expiry: expiry, signature: tampered, now: now) == .invalid)
    }

    @Test("through the live server: pipelined requests come back in order; the channel's answer equals the router's")
    func live() async throws {
        let app = try await buildApplication(try testConfiguration())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let alice = try await client.register("alice")
            let room = try await client.createRoom("r", token: alice.access)
            let (_, attachment) = try await FileServingTests.post(client, fixture: "photo-exif-orientation-6.jpg", name: "p.jpg",
                                                                  token: alice.access, room: room)
            let signed = try #require(attachment["thumbnailUrl"] as? String)
            // One connection: a thumbnail to make (PNG, 96 px) pipelined with a cached one, then
            // the cached one alone, then again with an If-None-Match that sends it to the router.
            let script = """
                import json, socket, sys
                port, signed = int(sys.argv[1]), sys.argv[2]
                s = socket.create_connection(("127.0.0.1", port), timeout=20)
                buffered = b""
                def request(path, extra=""):
                    return f"GET {path} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n{extra}\\r\\n".encode()
                def response():
                    global buffered
                    while b"\\r\\n\\r\\n" not in buffered:
                        buffered += s.recv(65536)
                    head, buffered = buffered.split(b"\\r\\n\\r\\n", 1)
                    lines = head.decode().split("\\r\\n")
                    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
                    size = int(headers["content-length"])
                    while len(buffered) < size:
                        buffered += s.recv(65536)
                    body, buffered = buffered[:size], buffered[size:]
                    headers.pop("date")
                    return {"status": lines[0], "headers": headers, "body": body.hex()}
                s.sendall(request(signed + "&w=96&format=png") + request(signed))
                answers = [response(), response()]
                s.sendall(request(signed)); answers.append(response())
                s.sendall(request(signed, 'If-None-Match: "other"\\r\\n')); answers.append(response())
                print(json.dumps(answers))
                """
            let output = try await Tool.run("python3", ["-c", script, String(port), signed])
            let answers = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [[String: Any]])
            try #require(answers.count == 4)
            let headers = answers.map { $0["headers"] as? [String: String] ?? [:] }
            #expect(answers.allSatisfy { $0["status"] as? String == "HTTP/1.1 200 OK" })
            #expect(headers[0]["content-type"] == "image/png")
            #expect(headers[1]["content-type"] == "image/jpeg")
            #expect(headers[2] == headers[3] && headers[1] == headers[2])
            #expect(answers[2]["body"] as? String == answers[3]["body"] as? String)
            #expect((answers[2]["body"] as? String)?.hasPrefix("ffd8") == true)
        }
    }
}
