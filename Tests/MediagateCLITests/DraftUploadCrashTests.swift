import Foundation
import MediagateTestSupport
import Testing

/// `mediagate upload --protocol ietf` (the IETF draft: the whole file in one request) while the
/// server is SIGKILLed twice and restarted; bytes on the wire counted by a relaying proxy.
@Suite("IETF draft upload across server crashes")
struct DraftUploadCrashTests {
    @Test("1 GiB by the draft, the server SIGKILLed twice: right SHA-256, < 1.1x the bytes sent")
    func twoKills() async throws {
        let data = try Fixtures.temporaryDirectory("draft-crash").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let source = (data as NSString).appendingPathComponent("big.bin")
        let size = 1 << 30
        try await Fixtures.writeRandomBytes(size, to: source)
        let expected = try await sha256(of: source)
        let added = try await Tool.run(ExecutableTests.executable, ["user", "add", "alice", "--data-dir", data], input: Data("a long password\n".utf8))
        #expect(added.status == 0)
        let port = try ServeCommandTests.freePort()
        let base = "http://127.0.0.1:\(port)"
        var server = try await ServeCommandTests.startServer(dataDirectory: data, port: port)
        defer { if server.isRunning { server.terminate() } }
        let login = try await ServeCommandTests.curl(["-H", "Content-Type: application/json", "-d", #"{"username":"alice","password":"a long password"}"#, "\(base)/api/auth/login"])
        let token = try #require(login.body["access_token"] as? String)
        let room = try #require(try await ServeCommandTests.curl(["-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                                                                 "-d", #"{"name":"crash"}"#, "\(base)/api/rooms"]).body["id"] as? Int)

        // A proxy that only relays and counts what the client sends; it outlives the restarts.
        let proxyPort = try ServeCommandTests.freePort()
        let stats = (data as NSString).appendingPathComponent("proxy.json")
        let proxy = try await Self.startProxy(listen: proxyPort, target: port, stats: stats)
        defer { if proxy.isRunning { proxy.terminate() } }

        let client = Process()
        client.executableURL = URL(fileURLWithPath: ExecutableTests.executable)
        client.arguments = ["upload", source, "--server", "http://127.0.0.1:\(proxyPort)", "--token", token, "--room", String(room),
                            "--protocol", "ietf", "--json", "--retries", "40", "--state", (data as NSString).appendingPathComponent("state.jsonl")]
        client.environment = ["HOME": data, "XDG_STATE_HOME": data, "MEDIAGATE_CREDENTIALS": (data as NSString).appendingPathComponent("c.json")]
        // Events go to a file: a pipe nobody reads while the test polls could fill and stop the client.
        let eventsPath = (data as NSString).appendingPathComponent("events.jsonl")
        _ = FileManager.default.createFile(atPath: eventsPath, contents: nil)
        client.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: eventsPath))
        client.standardError = FileHandle.nullDevice
        try client.run()
        defer { if client.isRunning { client.terminate() } }

        // The client's state file names the upload once the 104 has; its offset is read with
        // tus's HEAD, which (unlike the draft's) does not stop the request writing it.
        let stateFile = (data as NSString).appendingPathComponent("state.jsonl")
        var uploadURL: String?
        var offsets: [Int] = []
        for threshold in [300 << 20, 700 << 20] {
            var offset = 0
            for _ in 0..<6000 where offset < threshold {
                if uploadURL == nil, let text = try? String(contentsOfFile: stateFile, encoding: .utf8),
                   let range = text.range(of: #"/api/uploads/[A-Za-z0-9_-]+"#, options: .regularExpression) {
                    uploadURL = base + String(text[range])
                }
                if let uploadURL {
                    let head = try await Tool.run("curl", ["-s", "-I", "-H", "Tus-Resumable: 1.0.0", "-H", "Authorization: Bearer \(token)", uploadURL])
                    offset = head.stdout.split(separator: "\r\n").first { $0.lowercased().hasPrefix("upload-offset:") }
                        .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                }
                if offset < threshold { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(offset >= threshold && offset < size, "the kill should land mid-upload (offset \(offset))")
            offsets.append(offset)
            kill(server.processIdentifier, SIGKILL)
            await server.exited()
            server = try await ServeCommandTests.startServer(dataDirectory: data, port: port)
        }
        await client.exited()
        let events = try String(contentsOfFile: eventsPath, encoding: .utf8)
        // The proxy writes its count when a connection ends; the client's last one just did.
        try await Task.sleep(for: .milliseconds(500))
        #expect(client.terminationStatus == 0, "\(events.suffix(1500))")
        #expect(events.contains(#""event":"done""#))
        #expect(events.contains(expected), "the posted attachment's SHA-256 is the source's")

        let counted = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stats))) as? [String: Int])
        let sent = try #require(counted["upstream_bytes"])
        let ratio = Double(sent) / Double(size)
        print("draft upload across 2 kills at \(offsets.map { $0 >> 20 }) MiB: \(sent) bytes sent, \(String(format: "%.3f", ratio))x")
        #expect(ratio < 1.1, "sent \(sent) bytes for \(size)")
        let blob = ((data as NSString).appendingPathComponent("files") as NSString).appendingPathComponent(expected)
        #expect(FileManager.default.fileExists(atPath: blob))
    }

    static func startProxy(listen: Int, target: Int, stats: String) async throws -> Process {
        try await offPool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", Fixtures.packageRoot.appendingPathComponent("Tests/Helpers/fault_proxy.py").path,
                                 String(listen), String(target), stats]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            var line = Data()
            while !String(decoding: line, as: UTF8.self).hasSuffix("ready\n") {
                guard let byte = try output.fileHandleForReading.read(upToCount: 1), !byte.isEmpty else {
                    throw Tool.Failure(description: "fault_proxy.py ended before it was ready")
                }
                line.append(byte)
            }
            return process
        }
    }
}
