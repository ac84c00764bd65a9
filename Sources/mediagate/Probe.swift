import ArgumentParser
import Foundation
import MediaPipeline
import MediagateWire

/// `mediagate probe`: describe files as the attachments chat clients render.
struct Probe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe files as chat attachments: type, size, dimensions, duration, hash, placeholder.",
        discussion: """
            A file that cannot be decoded is still reported, with its error; the batch goes on. \
            Exit status 0 means every file was fully analysed, 1 that at least one was not.
            """
    )

    @Argument(help: "Files or directories to probe.", completion: .file())
    var paths: [String]

    @Flag(name: .shortAndLong, help: "Descend into subdirectories.")
    var recursive = false

    @Flag(help: "Print one JSON object per file and line instead of a table.")
    var json = false

    @Option(help: "Write a thumbnail of each file into this directory.", completion: .directory)
    var thumbnails: String?

    @Option(help: "Thumbnail box, WxH or N.")
    var size = BoxSize(width: 320, height: 320)

    @Option(help: "How a thumbnail meets its box: cover or contain.")
    var fit: ThumbnailRequest.Fit = .contain

    @Option(help: "Thumbnail encoding: jpeg, webp or png.")
    var format: ThumbnailRequest.Format = .jpeg

    @OptionGroup var media: MediaOptions

    func run() async throws {
        let files = try FileWalker(recursive: recursive).files(in: paths)
        let pipeline = media.makeProcessor()
        let request = thumbnails.map { _ in
            ThumbnailRequest(width: size.width, height: size.height, fit: fit, format: format)
        }
        if let thumbnails {
            try FileManager.default.createDirectory(atPath: thumbnails, withIntermediateDirectories: true)
        }
        var printer = ProbePrinter(json: json)
        var names = ThumbnailNames()
        var failures = 0

        // Every core busy, a bounded number of files in flight, results printed in input order.
        let window = 4 * media.jobsOrDefault
        try await withThrowingTaskGroup(of: ProbeOutcome.self) { group in
            var next = 0
            var pending = [Int: Result<MediaReport, any Error>]()
            var printed = 0
            func submit() {
                guard next < files.count else { return }
                let index = next
                next += 1
                group.addTask {
                    do {
                        return ProbeOutcome(index: index, result: .success(try await pipeline.probe(fileAt: files[index], thumbnail: request)))
                    } catch {
                        return ProbeOutcome(index: index, result: .failure(error))
                    }
                }
            }
            for _ in 0..<window { submit() }
            while let outcome = try await group.next() {
                pending[outcome.index] = outcome.result
                submit()
                while let ready = pending.removeValue(forKey: printed) {
                    let path = files[printed]
                    printed += 1
                    switch ready {
                    case .success(let report):
                        var thumbnailPath: String?
                        if let thumbnail = report.thumbnail, let directory = thumbnails {
                            let target = names.path(for: report.attachment, in: directory, format: thumbnail.format)
                            try thumbnail.data.write(to: URL(fileURLWithPath: target))
                            thumbnailPath = target
                        }
                        if report.error != nil { failures += 1 }
                        printer.print(path: path, report: report, thumbnail: thumbnailPath)
                    case .failure(let error):
                        failures += 1
                        printer.print(path: path, failure: error)
                    }
                }
            }
            // Every file is printed, whatever the order results came in; anything else is a bug
            // to report, not output to lose silently.
            guard printed == files.count else {
                throw ValidationError("internal error: \(files.count - printed) of \(files.count) results were lost")
            }
        }
        printer.finish(files: files.count, failures: failures)
        if failures > 0 { throw ExitCode(1) }
    }
}

/// One file's result and its place in the input.
///
/// A struct, not an `(Int, Result<MediaReport, any Error>)` tuple: with that tuple as the task
/// group's child result, Swift 6.3.1's release build (-O, Linux x86_64) hands back 0 as every
/// child's index, so `probe` printed one line (another file's) for a whole batch and exited 0.
/// Debug builds were right. A 40-line reproducer is in the #12 closing note.
struct ProbeOutcome: Sendable {
    var index: Int
    var result: Result<MediaReport, any Error>
}

extension MediaOptions {
    var jobsOrDefault: Int { jobs ?? MediaWorkerPool.defaultThreadCount }
}

/// Unique file names for thumbnails written into one directory.
struct ThumbnailNames {
    private var used = Set<String>()

    mutating func path(for attachment: Attachment, in directory: String, format: ThumbnailRequest.Format) -> String {
        var name = "\(attachment.filename).\(format.fileExtension)"
        if used.contains(name) {
            name = "\(attachment.filename)-\(attachment.sha256?.prefix(12) ?? "\(used.count)").\(format.fileExtension)"
        }
        used.insert(name)
        return (directory as NSString).appendingPathComponent(name)
    }
}
