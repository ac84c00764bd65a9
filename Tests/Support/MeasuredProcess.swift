import Foundation

/// Runs a program and reports its peak resident memory.
///
/// The measurement goes through GNU time rather than `wait4` on a child of the test process:
/// Linux carries the pre-`exec` high-water mark into the new program, and a child spawned with
/// `posix_spawn` (vfork semantics) shares the test process's large address space until `exec`,
/// so `wait4` would report the test runner's memory. GNU time forks from a small process.
public enum MeasuredProcess {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var maxResidentBytes: Int
        public var seconds: Double
    }

    public static func run(_ executable: String, _ arguments: [String]) async throws -> Result {
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("measured-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: report) }
        let started = Date()
        let output = try await Tool.run("/usr/bin/time", ["-f", "%M", "-o", report, executable] + arguments)
        let seconds = Date().timeIntervalSince(started)
        // GNU time writes "Command exited with non-zero status N" before the figure when N != 0.
        let lines = try String(contentsOfFile: report, encoding: .utf8).split(separator: "\n")
        guard let kilobytes = lines.last.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) else {
            throw Tool.Failure(description: "GNU time wrote no figure: \(lines)")
        }
        return Result(status: output.status, stdout: output.stdout, maxResidentBytes: kilobytes * 1024, seconds: seconds)
    }
}
