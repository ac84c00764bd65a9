import Foundation
import MediagateTestSupport
import Testing

/// SVG and PDF are decoded in a child process the server kills at the time limit (issue #13,
/// attack 1): run against `mediagate serve` itself, as users run it.
@Suite("decoders that can be killed")
struct DecodeIsolationTests {
    static func login(_ gateway: LiveGateway) async throws -> String {
        let result = try await Tool.run("curl", ["-s", "-H", "Content-Type: application/json", "-d",
                                                 #"{"username":"alice","password":"\#(LiveGateway.password)"}"#, "\(gateway.base)/api/auth/login"])
        let body = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return try #require(body?["access_token"] as? String, "\(result.stdout)")
    }

    /// Uploads `path` the seed's way; the JSON answer.
    static func upload(_ path: String, as name: String, token: String, to gateway: LiveGateway) async throws -> [String: Any] {
        let result = try await Tool.run("curl", ["-s", "-H", "Authorization: Bearer \(token)", "-F", "file=@\(path);filename=\(name)",
                                                 "\(gateway.base)/api/upload-file"])
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
    }

    /// Status and seconds taken of a GET with the token.
    static func get(_ url: String, token: String) async throws -> (status: String, seconds: Double) {
        let result = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "--max-time", "60",
                                                 "-H", "Authorization: Bearer \(token)", url])
        let parts = result.stdout.split(separator: " ")
        return (String(parts.first ?? ""), Double(parts.last ?? "") ?? 99)
    }

    @Test("a slow SVG thumbnail is stopped at the time limit, and asking again costs nothing")
    func slowSVGIsKilled() async throws {
        let gateway = try await LiveGateway.start("isolation", config: ["mediaTimeLimitSeconds": 3])
        defer { gateway.stop() }
        let token = try await Self.login(gateway)
        // 350 bytes whose filter costs ~10 s of CPU to draw 1280 px wide.
        let uploaded = try await Self.upload(Fixtures.hostile("slow-filter.svg"), as: "slow.svg", token: token, to: gateway)
        let fileId = try #require(uploaded["file_id"] as? String, "\(uploaded)")
        let thumbnail = "\(gateway.base)/api/files/\(fileId)/thumbnail?w=1280&format=png"

        // Drawn in-process this took 10.5 s against a 3 s limit; the killed worker answers at it.
        async let slow = Self.get(thumbnail, token: token)
        try await Task.sleep(for: .milliseconds(500))
        let health = try await Self.get("\(gateway.base)/healthz", token: token)
        #expect(health.status == "200" && health.seconds < 1, "\(health)")
        let first = try await slow
        // 422 when the 320 px picture made at upload succeeded and the 1280 px one timed out;
        // 404 when, on a loaded machine, the upload's own decode timed out too (the file is
        // then a plain file, with no thumbnail to make).
        #expect(["422", "404"].contains(first.status), "\(first)")
        #expect(first.seconds < 8, "the worker was not stopped at the 3 s limit: \(first)")
        let again = try await Self.get(thumbnail, token: token)
        #expect(again.status == first.status && again.seconds < 0.5, "the failure was not remembered: \(again)")
    }

    @Test("a decoder that crashes takes its worker down, not the gateway: the file is kept as a plain file")
    func crashingDecoder() async throws {
        let gateway = try await LiveGateway.start("crash", environment: ["MEDIAGATE_DECODE_WORKER_FAULT": "segv"])
        defer { gateway.stop() }
        let token = try await Self.login(gateway)
        let drawing = try await Self.upload(Fixtures.media("drawing.svg"), as: "drawing.svg", token: token, to: gateway)
        let attachment = try #require(drawing["attachment"] as? [String: Any], "\(drawing)")
        #expect(attachment["type"] as? String == "file")
        #expect((attachment["warning"] as? String)?.contains("crashed") == true, "\(attachment)")
        // The gateway is up, and pictures its own process decodes still work.
        #expect(try await Self.get("\(gateway.base)/healthz", token: token).status == "200")
        let photo = try await Self.upload(Fixtures.media("progressive.jpg"), as: "photo.jpg", token: token, to: gateway)
        #expect((photo["attachment"] as? [String: Any])?["type"] as? String == "image", "\(photo)")
    }
}
