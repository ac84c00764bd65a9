import ArgumentParser
import MediagateWire
import Foundation
import MediaPipeline
import MediagateClient
import NIOPosix

/// `mediagate upload`: a folder of files into a chat room, one attachment message per file,
/// resumably.
struct Upload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Upload files into a chat room as attachment messages, resumably.",
        discussion: """
            Each file is probed locally first (what the server would refuse is refused before a \
            byte is sent), uploaded with tus in checksummed chunks, retried with backoff when the \
            network fails, and posted as one message. Progress is kept in a state file, so a rerun \
            after Ctrl-C, kill -9 or a reboot resumes each file where the server has it and skips \
            files already posted. Exit status: 0 when every file made it, 1 when some did not, \
            77 when the login has to be renewed with `mediagate login`.
            """
    )

    @Argument(help: "Files or directories to upload. Hidden files in directories are skipped.", completion: .file())
    var paths: [String]

    @Option(help: "The room to post into (its id).")
    var room: Int

    @OptionGroup var client: ClientOptions

    @Flag(name: .shortAndLong, help: "Descend into subdirectories.")
    var recursive = false

    @Option(name: .customLong("include"), help: "Only files whose name matches this glob (repeatable; a glob with '/' matches the path).")
    var includes: [String] = []

    @Option(name: .customLong("exclude"), help: "Skip files whose name matches this glob (repeatable).")
    var excludes: [String] = []

    @Option(help: "Files uploaded at the same time.")
    var concurrency = 3

    @Option(name: .customLong("protocol"), help: """
        How the bytes go: tus (checksummed chunks) or ietf (the IETF resumable-upload draft that \
        iOS's URLSession speaks: the whole file in one request, resumed where the server has it).
        """)
    var wireProtocol = UploadProtocol.tus

    @Option(help: "With --protocol ietf: the draft's interop version (3, 5, 6, 7 or 8).")
    var interopVersion = 8

    @Option(help: "Bytes per PATCH request, e.g. 8MiB, 512KiB (tus).")
    var chunkSize = ByteCount(8 << 20)

    @Option(help: "Per-chunk checksum: sha256, sha1, md5 or none.")
    var checksum: TusClient.Checksum = .sha256

    @Option(help: "Failed attempts in a row (no progress between them) before a file is given up.")
    var retries = 10

    @Option(help: "Seconds without a byte moving before a transfer is aborted and retried.")
    var stallTimeout: Double = 30

    @Option(help: "The upload state file (default: $XDG_STATE_HOME/mediagate/uploads.jsonl).", completion: .file())
    var state: String?

    @Flag(help: "Print one JSON object per event and line, even on a terminal.")
    var json = false

    @Flag(help: "Remove EXIF (GPS included), XMP and IPTC metadata from still images before upload (re-encodes them).")
    var stripMetadata = false

    @Option(help: "Scale still images down so neither side exceeds this many pixels (orientation kept).")
    var maxDimension: Int?

    @Flag(help: "Convert HEIC/HEIF images to JPEG before upload.")
    var convertHeic = false

    @OptionGroup var media: MediaOptions

    func validate() throws {
        guard (1...64).contains(concurrency) else { throw ValidationError("--concurrency must be between 1 and 64.") }
        guard (64 << 10...1 << 30).contains(chunkSize.bytes) else { throw ValidationError("--chunk-size must be between 64KiB and 1GiB.") }
        guard (1...1000).contains(retries) else { throw ValidationError("--retries must be between 1 and 1000.") }
        guard stallTimeout >= 1, stallTimeout <= 3600 else { throw ValidationError("--stall-timeout must be between 1 and 3600 seconds.") }
        guard room > 0 else { throw ValidationError("--room must be a room id.") }
        guard ResumableDraft.InteropVersion(rawValue: interopVersion) != nil else {
            throw ValidationError("--interop-version must be one of \(ResumableDraft.supportedVersions).")
        }
        if let maxDimension, !(16...65_535).contains(maxDimension) {
            throw ValidationError("--max-dimension must be between 16 and 65535.")
        }
    }

    func run() async throws {
        let auth: SessionAuth
        do {
            auth = try client.session()
        } catch let error as ClientError {
            Self.fail("\(error)")
            throw ExitStatus.loginRequired
        }
        let files = try FileWalker(recursive: recursive).files(in: paths).filter(selected)
        // Files waiting for the server's pipeline or posting hold a thread but not an upload
        // slot, so up to three times as many files are in flight as are uploading.
        let threads = NIOThreadPool(numberOfThreads: concurrency * 3)
        threads.start()
        // The threads are joined before the process exits: OpenSSL's exit handlers free what a
        // pool thread that is still winding down may touch (seen: SIGSEGV in libcrypto after the
        // summary, on a loaded machine).
        do {
            try await upload(files, auth: auth, threads: threads)
        } catch {
            try? await threads.shutdownGracefully()
            throw error
        }
        try await threads.shutdownGracefully()
    }

    private func upload(_ files: [String], auth: SessionAuth, threads: NIOThreadPool) async throws {
        let inFlight = concurrency * 3

        // Before any file: is the server there, are we allowed in the room, what is its limit?
        let retry = RetryPolicy(maxAttempts: retries)
        let maxSize: Int?
        do {
            let room = self.room
            maxSize = try await threads.runIfActive {
                let connection = APIConnection(server: auth.server, auth: auth)
                try ChatClient(connection: connection).checkRoom(room)
                return try TusClient(connection: connection).maxSize()
            }
        } catch let error as ClientError {
            if case .loginRequired = error {
                Self.fail("\(error)")
                throw ExitStatus.loginRequired
            }
            if case .http(404, _, _) = error { Self.fail("room \(room) does not exist on \(auth.server), or you are not a member") }
            else { Self.fail("cannot reach \(auth.server): \(error)") }
            throw ExitCode.failure
        }

        let style: UploadReporter.Style = json || isatty(STDOUT_FILENO) == 0 ? .jsonLines : .terminal
        let sizes = files.map { (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int) ?? 0 }
        let stateFile = try UploadStateFile(path: state ?? UploadStateFile.defaultPath())
        let batch = BatchUpload(
            auth: auth, room: room, state: stateFile,
            reporter: UploadReporter(style: style, totalBytes: sizes.reduce(0, +)),
            processor: media.makeProcessor(), threads: threads, uploadSlots: AsyncSemaphore(limit: concurrency), maxSize: maxSize,
            forbidden: Set(UploadDefaults.forbiddenMimeTypes),
            preparation: ImagePreparation(stripMetadata: stripMetadata, maxDimension: maxDimension, convertHEIC: convertHeic),
            options: ResumableUpload.Options(chunkSize: chunkSize.bytes, checksum: checksum, retry: retry),
            wire: wireProtocol == .tus ? .tus : .ietf(ResumableDraft.InteropVersion(rawValue: interopVersion) ?? .v8),
            stallTimeout: .milliseconds(Int64(stallTimeout * 1000)))

        var counts = [BatchUpload.Outcome: Int]()
        await withTaskGroup(of: BatchUpload.Outcome.self) { group in
            var next = 0
            func submit() {
                guard next < files.count else { return }
                let file = files[next]
                next += 1
                group.addTask { await batch.upload(file) }
            }
            for _ in 0..<inFlight { submit() }
            for await outcome in group {
                counts[outcome, default: 0] += 1
                submit()
            }
        }
        let failed = counts[.failed, default: 0] + counts[.loginRequired, default: 0]
        batch.reporter.summary(files: files.count, uploaded: counts[.uploaded, default: 0],
                               skipped: counts[.skipped, default: 0], failed: failed)
        if counts[.loginRequired, default: 0] > 0 { throw ExitStatus.loginRequired }
        if failed > 0 { throw ExitStatus.someFailed }
    }

    /// `--include`/`--exclude`, matched against the file name (or the path, for a glob with '/').
    private func selected(_ path: String) -> Bool {
        func matches(_ glob: String) -> Bool {
            let subject = glob.contains("/") ? path : (path as NSString).lastPathComponent
            return fnmatch(glob, subject, 0) == 0
        }
        if !includes.isEmpty, !includes.contains(where: matches) { return false }
        return !excludes.contains(where: matches)
    }

    static func fail(_ message: String) {
        FileHandle.standardError.write(Data("mediagate upload: \(message)\n".utf8))
    }
}

/// A size written as bytes or with a unit: `8MiB`, `8M`, `512KiB`, `1048576`.
struct ByteCount: ExpressibleByArgument {
    var bytes: Int

    init(_ bytes: Int) { self.bytes = bytes }

    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces).lowercased()
        let digits = text.prefix { $0.isNumber }
        let multipliers: [String: Int] = ["": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000,
                                          "m": 1 << 20, "mib": 1 << 20, "mb": 1_000_000, "g": 1 << 30, "gib": 1 << 30, "gb": 1_000_000_000]
        guard let number = Int(digits), let multiplier = multipliers[String(text.dropFirst(digits.count))],
              number <= Int.max / multiplier else { return nil }
        bytes = number * multiplier
    }

    var defaultValueDescription: String { bytes % (1 << 20) == 0 ? "\(bytes >> 20)MiB" : "\(bytes)" }
}

extension TusClient.Checksum: ExpressibleByArgument {}

/// `--protocol`: how a file's bytes go to the server.
enum UploadProtocol: String, ExpressibleByArgument, CaseIterable {
    case tus, ietf
}
