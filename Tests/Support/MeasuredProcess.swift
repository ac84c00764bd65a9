import Foundation

/// Runs a program and reports its peak resident memory, read from `wait4`'s rusage.
public enum MeasuredProcess {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var maxResidentBytes: Int
        public var seconds: Double
    }

    public static func run(_ executable: String, _ arguments: [String]) throws -> Result {
        let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("measured-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: outputFile) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let started = Date()
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else { throw Tool.Failure(description: "posix_spawn \(executable): \(spawned)") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let seconds = Date().timeIntervalSince(started)
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let stdout = (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? ""
        // ru_maxrss is in kilobytes on Linux.
        return Result(status: exitStatus, stdout: stdout, maxResidentBytes: Int(usage.ru_maxrss) * 1024, seconds: seconds)
    }
}
