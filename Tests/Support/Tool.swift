import Foundation
import MediaPipeline

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
    ///
    /// Spawned with `posix_spawnp`, not Foundation's `Process`: in Swift 6.3.1 its `run()`
    /// over-reads a `dirent` while listing /proc/self/fd and crashed the test process now and
    /// then (swift-corelibs-foundation PR #5472), more often the more sockets were open.
    @discardableResult
    public static func runBlocking(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> Output {
        // Socket pairs made close-on-exec atomically (pipe2 is not imported): a tool started by
        // another thread at the same moment must not inherit these ends, or EOF never comes.
        var inPipe: [Int32] = [0, 0], outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        let kind = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, kind, 0, &inPipe) == 0, socketpair(AF_UNIX, kind, 0, &outPipe) == 0,
              socketpair(AF_UNIX, kind, 0, &errPipe) == 0 else {
            throw Failure(description: "socketpair: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if input == nil {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        } else {
            posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        // Nothing else: a tool that outlives us here (the PostgreSQL server the tests start)
        // holding another test's pipe would keep that test waiting for end-of-file forever.
        SpawnActions.closeInheritedDescriptors(&actions)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, executable, &actions, nil, argv, environ)
        for end in [inPipe[0], outPipe[1], errPipe[1]] { close(end) }
        guard spawned == 0 else {
            for end in [inPipe[1], outPipe[0], errPipe[0]] { close(end) }
            throw Failure(description: "cannot run \(executable): \(String(cString: strerror(spawned)))")
        }
        if let input {
            input.withUnsafeBytes { bytes in
                var written = 0
                while written < bytes.count {
                    // send with MSG_NOSIGNAL: a tool that exits without reading is no SIGPIPE here.
                    let count = send(inPipe[1], bytes.baseAddress! + written, bytes.count - written, Int32(MSG_NOSIGNAL))
                    if count <= 0 { break }
                    written += count
                }
            }
        }
        close(inPipe[1])
        // Both pipes read as they fill, so a chatty tool cannot block on a full one.
        var out = [UInt8](), err = [UInt8]()
        var open: [(fd: Int32, isOut: Bool)] = [(outPipe[0], true), (errPipe[0], false)]
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            var fds = open.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), -1) >= 0 || errno == EINTR else { break }
            for (index, ready) in fds.enumerated().reversed() where ready.revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(ready.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    if open[index].isOut { out += buffer[..<count] } else { err += buffer[..<count] }
                } else if count == 0 || errno != EINTR {
                    close(ready.fd)
                    open.remove(at: index)
                }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED ? WEXITSTATUS : 128 + WTERMSIG, as a shell reports it.
        let signal = status & 0x7f
        return Output(status: signal == 0 ? (status >> 8) & 0xff : 128 + signal,
                      stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
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
