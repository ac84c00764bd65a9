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

    static func curl(_ arguments: [String]) throws -> (status: Int, body: [String: Any]) {
        let output = try Tool.run("curl", ["-s", "-o", "-", "-w", "\n%{http_code}"] + arguments)
        let lines = output.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.last ?? "") ?? 0
        let body = lines.dropLast().joined(separator: "\n")
        let object = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
        return (status, object)
    }

    /// Starts the server and waits for /healthz.
    static func startServer(dataDirectory: String, port: Int) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ExecutableTests.executable)
        process.arguments = ["serve", "--port", "\(port)", "--data-dir", dataDirectory]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<100 {
            if (try? curl(["http://127.0.0.1:\(port)/healthz"]).status) == 200 { return process }
            usleep(100_000)
        }
        process.terminate()
        throw Tool.Failure(description: "the server did not answer /healthz")
    }

    @Test("user add, serve, log in, post; SIGTERM stops it cleanly and the message survives a restart")
    func serveLifecycle() throws {
        let data = try Fixtures.temporaryDirectory("serve").path
        let added = try Tool.run(ExecutableTests.executable, ["user", "add", "alice", "--data-dir", data], input: Data("a long password\n".utf8))
        #expect(added.status == 0, "\(added.stderr)")
        #expect(added.stdout.contains("created user alice"))
        let again = try Tool.run(ExecutableTests.executable, ["user", "add", "alice", "--data-dir", data], input: Data("a long password\n".utf8))
        #expect(again.status != 0)
        #expect(again.stderr.contains("taken"))
        let weak = try Tool.run(ExecutableTests.executable, ["user", "add", "bob", "--data-dir", data], input: Data("short\n".utf8))
        #expect(weak.status != 0)

        let port = try Self.freePort()
        let server = try Self.startServer(dataDirectory: data, port: port)
        let base = "http://127.0.0.1:\(port)"
        let login = try Self.curl(["-H", "Content-Type: application/json", "-d", #"{"username":"alice","password":"a long password"}"#, "\(base)/api/auth/login"])
        #expect(login.status == 200)
        let token = try #require(login.body["access_token"] as? String)
        let room = try Self.curl(["-H", "Content-Type: application/json", "-H", "Authorization: Bearer \(token)",
                                  "-d", #"{"name":"general"}"#, "\(base)/api/rooms"])
        #expect(room.status == 201)
        let roomId = try #require(room.body["id"] as? Int)
        let posted = try Self.curl(["-H", "Content-Type: application/json", "-H", "Authorization: Bearer \(token)",
                                    "-d", #"{"room_id":\#(roomId),"content":"before the restart"}"#, "\(base)/api/messages"])
        #expect(posted.status == 201)

        server.terminate() // SIGTERM
        server.waitUntilExit()
        #expect(server.terminationReason == .exit)
        #expect(server.terminationStatus == 0)

        let restarted = try Self.startServer(dataDirectory: data, port: port)
        defer { restarted.terminate(); restarted.waitUntilExit() }
        let history = try Tool.run("curl", ["-s", "-H", "Authorization: Bearer \(token)", "\(base)/api/messages?room_id=\(roomId)"])
        #expect(history.stdout.contains("before the restart"))
        let unauthorised = try Self.curl(["\(base)/api/rooms"])
        #expect(unauthorised.status == 401)
        #expect((unauthorised.body["error"] as? [String: Any])?["code"] as? String == "unauthorized")
    }
}
