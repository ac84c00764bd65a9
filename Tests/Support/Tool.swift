import Foundation

/// Runs an installed command-line tool (`ffprobe`, `vipsheader`, `file`, `exiftool`, …), the
/// independent witnesses our results are checked against.
public enum Tool {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String

        public var trimmed: String { stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String

        public init(description: String) {
            self.description = description
        }
    }

    /// Runs `executable` (looked up on PATH) with `arguments` and waits for it, on a thread of
    /// its own.
    ///
    /// Waiting for a process blocks its thread. Swift's cooperative pool has one thread per core
    /// (two here), every test shares it, and the servers of the in-process tests answer on it: a
    /// test that blocked a cooperative thread for a minute (a sync test waiting for a process)
    /// once held up the rest for seconds, and their time limits failed. So async code waits here.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], input: Data? = nil) async throws -> Output {
        try await offPool { try runBlocking(executable, arguments, input: input) }
    }

    /// ``run(_:_:input:)`` on the calling thread: only for code already on a thread of its own.
    @discardableResult
    public static func runBlocking(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
        let stdout = Pipe(), stderr = Pipe(), stdin = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        try process.run()
        if let input {
            stdin.fileHandleForWriting.write(input)
            try stdin.fileHandleForWriting.close()
        }
        // Read both pipes before waiting, so a chatty tool cannot fill a pipe and block.
        let errorData = LockedData()
        let errorReader = Thread { errorData.set(stderr.fileHandleForReading.readDataToEndOfFile()) }
        errorReader.start()
        let outData = stdout.fileHandleForReading.readDataToEndOfFile()
        // Not `waitUntilExit()`: off the main thread on Linux it spins a core until the exit.
        while process.isRunning { usleep(1000) }
        while !errorData.isSet { usleep(1000) }
        return Output(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errorData.value, as: UTF8.self))
    }

    /// Runs a tool that must succeed and returns its trimmed standard output.
    @discardableResult
    public static func text(_ executable: String, _ arguments: [String]) async throws -> String {
        let output = try await run(executable, arguments)
        guard output.status == 0 else {
            throw Failure(description: "\(executable) \(arguments.joined(separator: " ")) exited \(output.status): \(output.stderr)")
        }
        return output.trimmed
    }
}

private final class LockedData: @unchecked Sendable {
    // @unchecked Sendable: every access goes through `lock`.
    private let lock = NSLock()
    private var data: Data?

    func set(_ value: Data) { lock.withLock { data = value } }
    var isSet: Bool { lock.withLock { data != nil } }
    var value: Data { lock.withLock { data ?? Data() } }
}
