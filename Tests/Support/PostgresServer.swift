import Foundation

/// A real PostgreSQL 15 server for the tests, started once per test process in a temporary
/// directory (`initdb`, `pg_ctl`; as the `postgres` user when the tests run as root, since
/// `initdb` refuses root), listening on 127.0.0.1 only, and stopped when the process exits.
/// Each caller gets a database of its own.
public enum PostgresServer {
    static let binaries = "/usr/lib/postgresql/15/bin"

    private static let started = Started()

    /// The URL of a new, empty database on the shared test server.
    public static func freshDatabase(_ label: String) async throws -> String {
        let port = try await started.port()
        let name = "\(label.lowercased().filter { $0.isLetter || $0.isNumber })_\(UInt32.random(in: 0 ... .max))"
        let created = try await Tool.run(binaries + "/createdb", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", name])
        guard created.status == 0 else { throw Tool.Failure(description: "createdb: \(created.stderr)") }
        return "postgres://postgres@127.0.0.1:\(port)/\(name)"
    }

    /// Runs SQL on a database as the superuser (`psql`), returning its unaligned output.
    public static func psql(_ url: String, _ sql: String) async throws -> String {
        let output = try await Tool.run(binaries + "/psql", ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        guard output.status == 0 else { throw Tool.Failure(description: "psql: \(output.stderr)") }
        return output.trimmed
    }

    /// One start however many tests ask at once (an actor's awaits interleave: a plain
    /// "started yet?" flag let seven tests each start a server).
    private actor Started {
        private var starting: Task<Int, any Error>?

        func port() async throws -> Int {
            if let starting { return try await starting.value }
            let task = Task { try await PostgresServer.start() }
            starting = task
            return try await task.value
        }
    }

    /// The data directory of the running server, for the stop at exit (a C callback cannot
    /// capture it).
    nonisolated(unsafe) private static var dataDirectory: String?

    private static func start() async throws -> Int {
        let directory = try Fixtures.temporaryDirectory("postgres").appendingPathComponent("cluster").path
        let asRoot = getuid() == 0
        func command(_ executable: String, _ arguments: [String]) async throws -> Tool.Output {
            asRoot ? try await Tool.run("runuser", ["-u", "postgres", "--", executable] + arguments)
                   : try await Tool.run(executable, arguments)
        }
        if asRoot {
            let parent = (directory as NSString).deletingLastPathComponent
            _ = try await Tool.run("chown", ["postgres", parent])
        }
        let initdb = try await command(binaries + "/initdb", ["-D", directory, "-A", "trust", "-U", "postgres", "--no-sync"])
        guard initdb.status == 0 else { throw Tool.Failure(description: "initdb: \(initdb.stderr)") }
        for _ in 0..<5 {
            let port = Int.random(in: 20_000..<40_000)
            let options = "-k \(directory) -p \(port) -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
            let started = try await command(binaries + "/pg_ctl", ["-D", directory, "-o", options, "-l", directory + "/server.log", "-w", "start"])
            if started.status == 0 {
                dataDirectory = directory
                atexit {
                    guard let directory = PostgresServer.dataDirectory else { return }
                    let stop = getuid() == 0 ? ["runuser", "-u", "postgres", "--", PostgresServer.binaries + "/pg_ctl"]
                                             : [PostgresServer.binaries + "/pg_ctl"]
                    _ = try? Tool.runBlocking(stop[0], Array(stop.dropFirst()) + ["-D", directory, "-m", "immediate", "stop"])
                    try? FileManager.default.removeItem(atPath: (directory as NSString).deletingLastPathComponent)
                }
                return port
            }
        }
        throw Tool.Failure(description: "pg_ctl could not start PostgreSQL on any of 5 ports")
    }
}
