import Foundation
import MediagateTestSupport
import Testing

/// A real `mediagate serve` on 127.0.0.1 with one user, `alice`, and a home of its own for the
/// client's credentials and state files. Every process it starts, `stop()` stops.
final class LiveGateway: @unchecked Sendable {
    static let password = "a long password"

    let data: String
    let home: String
    let port: Int
    let base: String
    private let server: Process
    private var helpers: [Process] = []

    /// Starts a gateway; `config` becomes the server's `--config` file, `environment` is added to
    /// the server process's own.
    static func start(_ label: String, config: [String: Int] = [:], environment: [String: String] = [:]) async throws -> LiveGateway {
        try await offPool { try LiveGateway(label, config: config, environment: environment) }
    }

    private init(_ label: String, config: [String: Int], environment: [String: String]) throws {
        data = try Fixtures.temporaryDirectory(label).path
        home = (data as NSString).appendingPathComponent("home")
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let added = try Tool.runBlocking(ExecutableTests.executable, ["user", "add", "alice", "--data-dir", data], input: Data("\(Self.password)\n".utf8))
        guard added.status == 0 else { throw Tool.Failure(description: "user add: \(added.stderr)") }
        let configPath = (data as NSString).appendingPathComponent("config.json")
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))

        port = try ServeCommandTests.freePort()
        base = "http://127.0.0.1:\(port)"
        server = Process()
        server.executableURL = URL(fileURLWithPath: ExecutableTests.executable)
        server.arguments = ["serve", "--port", "\(port)", "--data-dir", data, "--config", configPath]
        // Foundation's Process.run can crash in Swift 6.3.1 (a dirent over-read listing
        // /proc/self/fd, swift-corelibs-foundation #5472); Tool uses posix_spawn instead, and
        // this long-lived server stays on Process, setting an environment only when asked.
        if !environment.isEmpty { server.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        for _ in 0..<100 {
            if (try? ServeCommandTests.curlBlocking(["\(base)/healthz"]).status) == 200 { return }
            usleep(100_000)
        }
        stop()
        throw Tool.Failure(description: "the server did not answer /healthz")
    }

    /// SIGTERM to every process, SIGKILL to any still there after 5 s. Polls instead of
    /// `waitUntilExit`, which spins a CPU on Linux when called off the main thread. Called from
    /// `defer`, so it blocks its thread; it is short, as every process here ends on SIGTERM.
    func stop() {
        let all = helpers + [server]
        for process in all where process.isRunning { process.terminate() }
        for _ in 0..<500 where all.contains(where: \.isRunning) { usleep(10_000) }
        for process in all where process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    deinit { stop() }

    /// The environment the client runs in: its credentials and state files under `home`.
    var environment: [String] {
        ["MEDIAGATE_CREDENTIALS=\(home)/credentials.json", "XDG_STATE_HOME=\(home)/state", "XDG_CONFIG_HOME=\(home)/config"]
    }

    var credentialsPath: String { "\(home)/credentials.json" }

    /// Runs the `mediagate` client with this gateway's environment.
    func mediagate(_ arguments: [String], input: Data? = nil, environment extra: [String] = []) async throws -> Tool.Output {
        try await Tool.run("env", environment + extra + [ExecutableTests.executable] + arguments, input: input)
    }

    /// `mediagate login` as alice.
    func login() async throws {
        let result = try await mediagate(["login", "--server", base, "--username", "alice"], input: Data("\(Self.password)\n".utf8))
        guard result.status == 0 else { throw Tool.Failure(description: "login: \(result.stderr)") }
    }

    /// The tokens the client stored for this server.
    func storedTokens() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: credentialsPath))
        let all = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try #require(all[base] as? [String: Any])
    }

    /// A JSON API call with curl; `body` is JSON.
    func api(_ method: String, _ path: String, token: String, body: Any? = nil) async throws -> (status: Int, json: Any?) {
        var arguments = ["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H", "Authorization: Bearer \(token)"]
        if let body {
            let text = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
            arguments += ["-H", "Content-Type: application/json", "-d", text]
        }
        let output = try await Tool.run("curl", arguments + [base + path])
        let lines = output.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let text = lines.dropLast().joined(separator: "\n")
        return (Int(lines.last ?? "") ?? 0, try? JSONSerialization.jsonObject(with: Data(text.utf8)))
    }

    /// A fresh access token for alice, straight from the API.
    func token() async throws -> String {
        let output = try await Tool.run("curl", ["-s", "-H", "Content-Type: application/json", "-d",
                                                  #"{"username":"alice","password":"\#(Self.password)"}"#, "\(base)/api/auth/login"])
        let body = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
        return try #require(body["access_token"] as? String)
    }

    func createRoom(_ name: String, token: String) async throws -> Int {
        let created = try await api("POST", "/api/rooms", token: token, body: ["name": name])
        return try #require((created.json as? [String: Any])?["id"] as? Int)
    }

    /// Every message of a room, oldest first.
    func history(room: Int, token: String) async throws -> [[String: Any]] {
        let page = try await api("GET", "/api/messages?room_id=\(room)&limit=100", token: token)
        return ((page.json as? [[String: Any]]) ?? []).reversed()
    }

    /// Starts a helper process (a Python script from Tests/Helpers) that prints "ready" when it
    /// is; it is stopped with the gateway. Returns the reading end of its output.
    func helper(_ script: String, _ arguments: [String]) async throws -> FileHandle {
        try await offPool { try self.startHelper(script, arguments) }
    }

    private func startHelper(_ script: String, _ arguments: [String]) throws -> FileHandle {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Fixtures.packageRoot.appendingPathComponent("Tests/Helpers/\(script)").path] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        helpers.append(process)
        var line = Data()
        while !String(decoding: line, as: UTF8.self).hasSuffix("ready\n") {
            guard let byte = try output.fileHandleForReading.read(upToCount: 1), !byte.isEmpty else {
                throw Tool.Failure(description: "\(script) ended before it was ready")
            }
            line.append(byte)
        }
        return output.fileHandleForReading
    }

    /// A fault-injecting proxy in front of the server (Tests/Helpers/fault_proxy.py).
    func faultProxy(_ options: [String]) async throws -> (url: String, stats: () throws -> [String: Int]) {
        let port = try ServeCommandTests.freePort()
        let statsPath = (data as NSString).appendingPathComponent("proxy-\(port).json")
        _ = try await helper("fault_proxy.py", [String(port), String(self.port), statsPath] + options)
        return ("http://127.0.0.1:\(port)", {
            let data = try Data(contentsOf: URL(fileURLWithPath: statsPath))
            return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Int])
        })
    }
}

/// A file of random bytes and its SHA-256.
func randomFile(in directory: String, name: String, bytes: Int) async throws -> (path: String, sha256: String) {
    let path = (directory as NSString).appendingPathComponent(name)
    try await Fixtures.writeRandomBytes(bytes, to: path)
    return (path, try await sha256(of: path))
}

func sha256(of path: String) async throws -> String {
    String(try await Tool.text("sha256sum", [path]).prefix(64))
}

/// The JSON lines `mediagate upload --json` printed.
func events(_ output: Tool.Output) -> [[String: Any]] {
    output.stdout.split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
}
