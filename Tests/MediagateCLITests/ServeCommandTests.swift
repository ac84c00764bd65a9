import Foundation
import MediagateTestSupport
import Testing

/// `mediagate user add` and `mediagate serve` as processes, driven with curl.
@Suite("mediagate serve as a process")
struct ServeCommandTests {
    /// A port that was free a moment ago.
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                bind(descriptor, pointer, length)
                return getsockname(descriptor, pointer, &length)
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func curl(_ arguments: [String]) async throws -> (status: Int, body: [String: Any]) {
        parse(try await Tool.run("curl", ["-s", "-o", "-", "-w", "\n%{http_code}"] + arguments))
    }

    /// ``curl(_:)`` on the calling thread, for code on a thread of its own.
    static func curlBlocking(_ arguments: [String]) throws -> (status: Int, body: [String: Any]) {
        parse(try Tool.runBlocking("curl", ["-s", "-o", "-", "-w", "\n%{http_code}"] + arguments))
    }

    /// curl's output with `-w "\n%{http_code}"`: the status last, a JSON object before it.
    private static func parse(_ output: Tool.Output) -> (status: Int, body: [String: Any]) {
        let lines = output.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.last ?? "") ?? 0
        let body = lines.dropLast().joined(separator: "\n")
        let object = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
        return (status, object)
    }

    /// Starts the server and waits for /healthz.
    static func startServer(dataDirectory: String, port: Int, extraArguments: [String] = []) async throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ExecutableTests.executable)
        process.arguments = ["serve", "--port", "\(port)", "--data-dir", dataDirectory] + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<100 {
            if (try? await curl(["http://127.0.0.1:\(port)/healthz"]).status) == 200 { return process }
            try await Task.sleep(for: .milliseconds(100))
        }
        process.terminate()
        throw Tool.Failure(description: "the server did not answer /healthz")
    }

    @Test("--log-format json: every log line is one JSON object with time, level, label and message")
    func jsonLogs() async throws {
        let data = try Fixtures.temporaryDirectory("json-logs").path
        let port = try Self.freePort()
        let log = (data as NSString).appendingPathComponent("server.log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ExecutableTests.executable)
        process.arguments = ["serve", "--port", "\(port)", "--data-dir", data, "--log-format", "json"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try process.run()
        var up = false
        for _ in 0..<100 where !up {
            up = (try? await Self.curl(["http://127.0.0.1:\(port)/healthz"]).status) == 200
            if !up { try await Task.sleep(for: .milliseconds(100)) }
        }
        _ = try await Self.curl(["http://127.0.0.1:\(port)/api/nothing-here"])
        process.terminate()
        await process.exited()
        #expect(up)
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.count >= 2, "\(lines)")
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] is String && object?["message"] is String && object?["time"] is String && object?["label"] is String,
                    "\(line)")
        }
        #expect(lines.contains { $0.contains("/healthz") }, "the request log names the path")
        let refused = try await Tool.run(ExecutableTests.executable, ["serve", "--log-format", "xml"])
        #expect(refused.status != 0 && refused.stderr.contains("text or json"))
    }

    @Test("user add, serve, log in, post; SIGTERM stops it cleanly and the message survives a restart")
    func serveLifecycle() async throws {
        let data = try Fixtures.temporaryDirectory("serve").path
        let added = try await Tool.run(ExecutableTests.executable, ["user", "add", "alice", "--data-dir", data], input: Data("a long password\n".utf8))
        #expect(added.status == 0, "\(added.stderr)")
        #expect(added.stdout.contains("created user alice"))
        let again = try await Tool.run(ExecutableTests.executable, ["user", "add", "alice", "--data-dir", data], input: Data("a long password\n".utf8))
        #expect(again.status != 0)
        #expect(again.stderr.contains("taken"))
        let weak = try await Tool.run(ExecutableTests.executable, ["user", "add", "bob", "--data-dir", data], input: Data("short\n".utf8))
        #expect(weak.status != 0)

        let port = try Self.freePort()
        let server = try await Self.startServer(dataDirectory: data, port: port)
        let base = "http://127.0.0.1:\(port)"
        let login = try await Self.curl(["-H", "Content-Type: application/json", "-d", #"{"username":"alice","password":"a long password"}"#, "\(base)/api/auth/login"])
        #expect(login.status == 200)
        let token = try #require(login.body["access_token"] as? String)
        let room = try await Self.curl(["-H", "Content-Type: application/json", "-H", "Authorization: Bearer \(token)",
                                  "-d", #"{"name":"general"}"#, "\(base)/api/rooms"])
        #expect(room.status == 200)
        let roomId = try #require(room.body["id"] as? Int)
        let posted = try await Self.curl(["-H", "Content-Type: application/json", "-H", "Authorization: Bearer \(token)",
                                    "-d", #"{"room_id":\#(roomId),"content":"before the restart"}"#, "\(base)/api/messages"])
        #expect(posted.status == 201)

        server.terminate() // SIGTERM
        await server.exited()
        #expect(server.terminationReason == .exit)
        #expect(server.terminationStatus == 0)

        let restarted = try await Self.startServer(dataDirectory: data, port: port)
        defer { if restarted.isRunning { restarted.terminate() } }
        let history = try await Tool.run("curl", ["-s", "-H", "Authorization: Bearer \(token)", "\(base)/api/messages?room_id=\(roomId)"])
        #expect(history.stdout.contains("before the restart"))
        let unauthorised = try await Self.curl(["\(base)/api/rooms"])
        #expect(unauthorised.status == 401)
        #expect((unauthorised.body["error"] as? [String: Any])?["code"] as? String == "unauthorized")
    }
}
