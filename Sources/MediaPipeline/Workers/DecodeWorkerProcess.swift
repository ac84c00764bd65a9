import Foundation

/// Decoding in a child process that can be killed: for the libraries that do not stop when
/// libvips' kill flag is set.
///
/// libvips checks its kill flag between tiles, and FFmpeg its interrupt callback between packets,
/// so the time limit holds for everything they decode themselves. librsvg (SVG) and poppler
/// (PDF) render a whole page in one call: an SVG filter built to be slow (`feTurbulence` with
/// 100 octaves under a large blur) ran 3 min 45 s past a 30 s limit, in the gateway's own
/// process. Those two go to a child (`mediagate decode-worker`, one per file) with CPU-time and
/// address-space limits, killed at the deadline; a crash in a decoder is the child's death, not
/// the gateway's. The job and the answer travel as JSON files in a private temporary folder.
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

    /// Runs `job` in a child and waits for it, at most until `deadline` (plus a second for the
    /// child to start and write its answer). Blocks the calling thread: call on a media worker.
    func run(_ job: DecodeJob, deadline: Deadline) throws(MediaError) -> DecodeAnswer {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mediagate-decode-\(UUID().uuidString)")
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700]) } catch {
            throw MediaError(.io, "cannot make a folder for the decode worker: \(error)")
        }
        defer { try? FileManager.default.removeItem(at: folder) }
        let jobFile = folder.appendingPathComponent("job.json"), answerFile = folder.appendingPathComponent("answer.json")
        do { try JSONEncoder().encode(job).write(to: jobFile) } catch {
            throw MediaError(.io, "cannot write the decode job: \(error)")
        }

        let pid = try spawn(["decode-worker", jobFile.path, answerFile.path, String(memoryLimitBytes)])
        // Polled rather than waited for: a blocking waitpid cannot time out, and Foundation's
        // Process (which can) crashed in the test runner launching several at once.
        let giveUp = ContinuousClock.now + .microseconds(deadline.remainingMicroseconds) + .seconds(1)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            guard ContinuousClock.now < giveUp else {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw MediaError(.timedOut, "decoding ran past the time limit; its worker process was killed")
            }
            usleep(2_000)
        }
        // WIFSIGNALED / WTERMSIG, which Swift does not import.
        let signal = status & 0x7f
        if signal != 0 && signal != 0x7f {
            if signal == SIGXCPU || signal == SIGKILL { throw MediaError(.timedOut, "the decode worker ran out of CPU time (signal \(signal))") }
            throw MediaError(.corrupt, "the decoder crashed on this file (signal \(signal)); the gateway is unaffected")
        }
        guard let data = try? Data(contentsOf: answerFile), let answer = try? JSONDecoder().decode(DecodeAnswer.self, from: data) else {
            throw MediaError(.corrupt, "the decode worker exited (status \((status >> 8) & 0xff)) without an answer")
        }
        return answer
    }
}

extension DecodeWorkerProcess {
    /// Starts `executable` with `arguments`, its standard streams on /dev/null, this process's
    /// environment plus ``environment`` and no Swift crash backtrace (it takes seconds; the
    /// parent reports the signal). Returns the child's pid.
    fileprivate func spawn(_ arguments: [String]) throws(MediaError) -> pid_t {
        var variables = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        variables["SWIFT_BACKTRACE"] = "enable=no"
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard status == 0 else {
            throw MediaError(.io, "cannot start the decode worker \(executable): \(String(cString: strerror(status)))")
        }
        return pid
    }
}

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

    var limits: MediaLimits {
        MediaLimits(maxPixels: maxPixels, maxFrames: maxFrames, timeLimit: .milliseconds(Int64(timeLimitSeconds * 1000)))
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

/// The worker's side: `mediagate decode-worker JOB ANSWER MEMORY`.
public enum DecodeWorkerMain {
    /// Runs one job in this process (the child) and writes the answer; returns the exit status.
    public static func run(jobPath: String, answerPath: String, memoryLimitBytes: Int) -> Int32 {
        guard let data = FileManager.default.contents(atPath: jobPath),
              let job = try? JSONDecoder().decode(DecodeJob.self, from: data) else { return 2 }
        // The kernel enforces what the parent's deadline might miss: CPU time past the limit
        // (SIGXCPU, then SIGKILL a second later) and memory (allocation fails).
        let cpuSeconds = rlim_t(max(1, job.timeLimitSeconds.rounded(.up)) + 1)
        var cpu = rlimit(rlim_cur: cpuSeconds, rlim_max: cpuSeconds + 1)
        setrlimit(__rlimit_resource_t(RLIMIT_CPU.rawValue), &cpu)
        var memory = rlimit(rlim_cur: rlim_t(memoryLimitBytes), rlim_max: rlim_t(memoryLimitBytes))
        setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &memory)
        if ProcessInfo.processInfo.environment["MEDIAGATE_DECODE_WORKER_FAULT"] == "segv" {
            // A real bad write, as a decoder bug makes (a raised SIGSEGV returns from Swift's
            // crash handler and carries on).
            UnsafeMutablePointer<Int>(bitPattern: 8)!.pointee = 1
        }

        let worker = MediaWorker()
        defer { worker.close() }
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
                let request = job.thumbnail?.request ?? ThumbnailRequest()
                answer.set(try analysis.thumbnail(path: job.path, request: request))
            }
        } catch {
            answer.errorCode = error.code.description
            answer.errorMessage = error.message
        }
        guard let encoded = try? JSONEncoder().encode(answer), (try? encoded.write(to: URL(fileURLWithPath: answerPath))) != nil else {
            return 3
        }
        return 0
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
