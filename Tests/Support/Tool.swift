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

    /// Runs `executable` (looked up on PATH) with `arguments` and waits for it.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> Output {
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

    /// ``run(_:_:input:)`` on a thread of its own, for async code.
    ///
    /// Waiting for a process blocks its thread. Swift's cooperative pool has one thread per core,
    /// and a server under test in the same process needs them: two tests blocking them at once
    /// would stop the server, and with it the very processes they wait for.
    public static func exec(_ executable: String, _ arguments: [String], input: Data? = nil) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result { try run(executable, arguments, input: input) })
            }.start()
        }
    }

    /// Runs a tool that must succeed and returns its trimmed standard output.
    @discardableResult
    public static func text(_ executable: String, _ arguments: [String]) throws -> String {
        let output = try run(executable, arguments)
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
