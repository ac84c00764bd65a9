import Foundation
import MediagateWire

/// Decoding in a child process that can be killed: for the libraries that do not stop when
/// libvips' kill flag is set.
///
/// libvips checks its kill flag between tiles, and FFmpeg its interrupt callback between packets,
/// so the time limit holds for everything they decode themselves. librsvg (SVG) and poppler
/// (PDF) render a whole page in one call: an SVG filter built to be slow (`feTurbulence` with
/// 100 octaves under a large blur) ran 3 min 45 s past a 30 s limit, in the gateway's own
/// process. Those two go to a child, `mediagate decode-worker`, with CPU-time and address-space
/// limits, killed at the deadline; a crash in a decoder is the child's death, not the gateway's.
///
/// Each media worker thread keeps one child for as long as it lives (starting a `mediagate`
/// costs ~110 ms of CPU, ten times an SVG's decode), talking JSON lines over a socket pair; a
/// child that is killed or dies is replaced by the next job that needs one.
public struct DecodeWorkerProcess: Sendable {
    /// The `mediagate` executable whose `decode-worker` command does the work.
    public var executable: String
    /// Address space the child may map (`RLIMIT_AS`).
    public var memoryLimitBytes: Int
    /// Extra environment for the child (tests use it to make a worker crash on purpose).
    public var environment: [String: String]

    public init(executable: String, memoryLimitBytes: Int = 4 << 30, environment: [String: String] = [:]) {
        self.executable = executable
        self.memoryLimitBytes = memoryLimitBytes
        self.environment = environment
    }

    /// The loaders whose libraries ignore libvips' kill flag.
    static let unkillableLoaders: Set<String> = ["svgload_source", "svgload", "pdfload"]

    /// Time a child gets past the deadline to notice it and answer, before it is killed.
    static let grace: Duration = .milliseconds(300)

    /// Runs `job` in `worker`'s child (started if it has none) and waits for the answer, at
    /// most until `deadline`. Blocks the calling thread: call on the media worker it names.
    func run(_ job: DecodeJob, deadline: Deadline, on worker: MediaWorker) throws(MediaError) -> DecodeAnswer {
        let child: DecodeChild
        if let running = worker.decodeChild {
            child = running
        } else {
            child = try DecodeChild(executable: executable, memoryLimitBytes: memoryLimitBytes, environment: environment)
            worker.decodeChild = child
        }
        let line: [UInt8]
        do {
            var request = try JSONEncoder().encode(job)
            request.append(UInt8(ascii: "\n"))
            try child.send(request)
            line = try child.receiveLine(until: ContinuousClock.now + .microseconds(deadline.remainingMicroseconds) + Self.grace)
        } catch let failure as DecodeChildFailure {
            worker.decodeChild = nil
            throw failure.mediaError(child.end())
        } catch {
            throw MediaError(.io, "cannot write the decode job: \(error)")
        }
        guard let answer = try? JSONDecoder().decode(DecodeAnswer.self, from: Data(line)) else {
            worker.decodeChild = nil
            child.end()
            throw MediaError(.corrupt, "the decode worker answered something that is not an answer")
        }
        return answer
    }
}

/// Why talking to a child failed.
enum DecodeChildFailure: Error {
    case timedOut
    case gone
    case io(String)

    /// The error a job sees, given how the child ended (its `waitpid` status).
    func mediaError(_ status: Int32) -> MediaError {
        // WIFSIGNALED / WTERMSIG, which Swift does not import.
        let signal = status & 0x7f
        switch self {
        case .timedOut:
            return MediaError(.timedOut, "decoding ran past the time limit; its worker process was killed")
        case .gone where signal == SIGXCPU:
            return MediaError(.timedOut, "the decode worker ran out of CPU time")
        case .gone where signal != 0 && signal != 0x7f:
            return MediaError(.corrupt, "the decoder crashed on this file (signal \(signal)); the gateway is unaffected")
        case .gone:
            return MediaError(.corrupt, "the decode worker exited (status \((status >> 8) & 0xff)) without an answer")
        case .io(let message):
            return MediaError(.io, "the decode worker: \(message)")
        }
    }
}

/// One running `mediagate decode-worker`, its stdin and stdout one end of a socket pair (so that
/// writing to a child that died is an error here, not a SIGPIPE for the whole gateway). Owned by
/// one media worker thread.
final class DecodeChild {
    let pid: pid_t
    private let socket: Int32
    private var buffered: [UInt8] = []
    private var ended = false

    init(executable: String, memoryLimitBytes: Int, environment: [String: String]) throws(MediaError) {
        var ends: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw MediaError(.io, "cannot make a socket pair for the decode worker: \(String(cString: strerror(errno)))")
        }
        var variables = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // No Swift crash backtrace: it takes seconds, and the parent reports the signal.
        variables["SWIFT_BACKTRACE"] = "enable=no"
        let arguments: [String] = [executable, "decode-worker", String(memoryLimitBytes)]
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 clears close-on-exec: the child keeps only its end, as stdin and stdout.
        posix_spawn_file_actions_adddup2(&actions, ends[1], 0)
        posix_spawn_file_actions_adddup2(&actions, ends[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        SpawnActions.closeInheritedDescriptors(&actions)
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        close(ends[1])
        guard status == 0 else {
            close(ends[0])
            throw MediaError(.io, "cannot start the decode worker \(executable): \(String(cString: strerror(status)))")
        }
        self.pid = pid
        socket = ends[0]
    }

    func send(_ bytes: Data) throws(DecodeChildFailure) {
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if count < 0 {
                if errno == EINTR { continue }
                throw errno == EPIPE || errno == ECONNRESET ? .gone : .io(String(cString: strerror(errno)))
            }
            sent += count
        }
    }

    /// The next line the child writes, without its newline; `.timedOut` at `deadline`.
    func receiveLine(until deadline: ContinuousClock.Instant) throws(DecodeChildFailure) -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            if let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffered[..<newline])
                buffered.removeSubrange(...newline)
                return line
            }
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { throw .timedOut }
            var ready = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(min(1000, max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
            let polled = poll(&ready, 1, milliseconds)
            if polled < 0, errno != EINTR { throw .io(String(cString: strerror(errno))) }
            guard polled > 0 else { continue }
            let count = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count == 0 { throw .gone }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw errno == ECONNRESET ? .gone : .io(String(cString: strerror(errno)))
            }
            buffered.append(contentsOf: chunk[..<count])
        }
    }

    /// Ends the child (SIGKILL unless it is gone already) and returns its `waitpid` status.
    @discardableResult
    func end() -> Int32 {
        guard !ended else { return 0 }
        ended = true
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == 0 {
            kill(pid, SIGKILL)
            _ = waitpid(pid, &status, 0)
        }
        close(socket)
        return status
    }

    deinit { end() }
}

@available(*, unavailable, message: "a decode child belongs to one media worker thread")
extension DecodeChild: Sendable {}

/// What a decode worker is asked: one file, probed or thumbnailed, under these limits.
struct DecodeJob: Codable, Sendable {
    enum Mode: String, Codable { case probe, thumbnail }
    var mode: Mode
    var path: String
    var filename: String
    var headersOnly: Bool
    var knownSHA256: String?
    var thumbnail: ThumbnailSpec?
    var maxPixels: Int
    var maxFrames: Int
    var maxDecodedBytes: Int
    var timeLimitSeconds: Double

    struct ThumbnailSpec: Codable, Sendable {
        var width: Int
        var height: Int
        var fit: String
        var format: String
        var quality: Int

        init(_ request: ThumbnailRequest) {
            (width, height, fit, format, quality) = (request.width, request.height, request.fit.rawValue, request.format.rawValue, request.quality)
        }

        var request: ThumbnailRequest {
            ThumbnailRequest(width: width, height: height, fit: ThumbnailRequest.Fit(rawValue: fit) ?? .contain,
                             format: ThumbnailRequest.Format(rawValue: format) ?? .jpeg, quality: quality)
        }
    }

    init(mode: Mode, path: String, filename: String, headersOnly: Bool, knownSHA256: String?, thumbnail: ThumbnailRequest?,
         limits: MediaLimits) {
        (self.mode, self.path, self.filename, self.headersOnly, self.knownSHA256) = (mode, path, filename, headersOnly, knownSHA256)
        self.thumbnail = thumbnail.map(ThumbnailSpec.init)
        (maxPixels, maxFrames, maxDecodedBytes) = (limits.maxPixels, limits.maxFrames, limits.maxDecodedBytes)
        timeLimitSeconds = Double(limits.timeLimit.components.seconds) + Double(limits.timeLimit.components.attoseconds) / 1e18
    }

    var limits: MediaLimits {
        MediaLimits(maxPixels: maxPixels, maxFrames: maxFrames, timeLimit: .milliseconds(Int64(timeLimitSeconds * 1000)),
                    maxDecodedBytes: maxDecodedBytes)
    }
}

/// A decode worker's answer: the report's parts that cross the process boundary.
struct DecodeAnswer: Codable, Sendable {
    var attachment: Attachment?
    var errorCode: String?
    var errorMessage: String?
    var thumbnail: Data?
    var thumbnailWidth: Int?
    var thumbnailHeight: Int?
    var thumbnailFormat: String?

    var error: MediaError? {
        errorCode.map { MediaError(MediaError.Code(named: $0), errorMessage ?? "") }
    }

    var decodedThumbnail: Thumbnail? {
        guard let thumbnail, let thumbnailWidth, let thumbnailHeight else { return nil }
        return Thumbnail(data: thumbnail, width: thumbnailWidth, height: thumbnailHeight,
                         format: ThumbnailRequest.Format(rawValue: thumbnailFormat ?? "") ?? .jpeg)
    }
}

/// The worker's side: `mediagate decode-worker MEMORY`, reading one JSON job a line on stdin
/// and writing one JSON answer a line on stdout, until stdin ends.
public enum DecodeWorkerMain {
    /// Serves jobs until stdin closes; returns the exit status.
    public static func serve(memoryLimitBytes: Int) -> Int32 {
        // The kernel enforces what the parent's deadline might miss: memory (allocation
        // fails) for the child's life, and CPU time (SIGXCPU) per job, set below.
        var memory = rlimit(rlim_cur: rlim_t(memoryLimitBytes), rlim_max: rlim_t(memoryLimitBytes))
        setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &memory)
        let worker = MediaWorker()
        defer { worker.close() }
        while let line = readLine(strippingNewline: true) {
            guard let job = try? JSONDecoder().decode(DecodeJob.self, from: Data(line.utf8)) else { return 2 }
            limitCPU(toAnother: job.timeLimitSeconds)
            if ProcessInfo.processInfo.environment["MEDIAGATE_DECODE_WORKER_FAULT"] == "segv" {
                // A real bad write, as a decoder bug makes (a raised SIGSEGV returns from
                // Swift's crash handler and carries on).
                UnsafeMutablePointer<Int>(bitPattern: 8)!.pointee = 1
            }
            guard var encoded = try? JSONEncoder().encode(answer(to: job, on: worker)) else { return 3 }
            encoded.append(UInt8(ascii: "\n"))
            FileHandle.standardOutput.write(encoded)
        }
        return 0
    }

    static func answer(to job: DecodeJob, on worker: MediaWorker) -> DecodeAnswer {
        let analysis = MediaAnalysis(worker: worker, limits: job.limits)
        var answer = DecodeAnswer()
        do {
            switch job.mode {
            case .probe:
                let report = try analysis.probe(path: job.path, filename: job.filename, thumbnail: job.thumbnail?.request,
                                                depth: job.headersOnly ? .headers : .full, knownSHA256: job.knownSHA256)
                answer.attachment = report.attachment
                answer.errorCode = report.error?.code.description
                answer.errorMessage = report.error?.message
                answer.set(report.thumbnail)
            case .thumbnail:
                answer.set(try analysis.thumbnail(path: job.path, request: job.thumbnail?.request ?? ThumbnailRequest()))
            }
        } catch {
            answer.errorCode = error.code.description
            answer.errorMessage = error.message
        }
        return answer
    }

    /// Lets this process use `seconds` more CPU time (and a second's grace) before SIGXCPU.
    private static func limitCPU(toAnother seconds: Double) {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let used = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + 1
        var cpu = rlimit(rlim_cur: rlim_t(used) + rlim_t(max(1, seconds.rounded(.up))) + 1, rlim_max: rlim_t.max)
        setrlimit(__rlimit_resource_t(RLIMIT_CPU.rawValue), &cpu)
    }
}

extension DecodeAnswer {
    mutating func set(_ thumbnail: Thumbnail?) {
        guard let thumbnail else { return }
        self.thumbnail = thumbnail.data
        thumbnailWidth = thumbnail.width
        thumbnailHeight = thumbnail.height
        thumbnailFormat = thumbnail.format.rawValue
    }
}
