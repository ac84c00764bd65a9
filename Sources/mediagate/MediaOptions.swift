import ArgumentParser
import MediaPipeline

/// Options every media command shares: the limits that protect against hostile files.
struct MediaOptions: ParsableArguments {
    @Option(help: "Refuse images and video frames larger than this many megapixels.")
    var maxMegapixels: Double = 50

    @Option(help: "Stop decoding a file after this many seconds.")
    var timeLimit: Double = 30

    @Option(help: "Worker threads for decoding (default: one per core, plus one).")
    var jobs: Int?

    func validate() throws {
        guard maxMegapixels > 0, maxMegapixels <= 10_000 else {
            throw ValidationError("--max-megapixels must be between 0 and 10000.")
        }
        guard timeLimit > 0, timeLimit <= 3600 else {
            throw ValidationError("--time-limit must be between 0 and 3600 seconds.")
        }
        if let jobs, !(1...256).contains(jobs) {
            throw ValidationError("--jobs must be between 1 and 256.")
        }
    }

    var limits: MediaLimits {
        MediaLimits(maxPixels: Int(maxMegapixels * 1_000_000), timeLimit: .milliseconds(Int(timeLimit * 1000)))
    }

    func makeProcessor() -> MediaProcessor {
        let pool = jobs.map { MediaWorkerPool(threadCount: $0) } ?? MediaWorkerPool()
        return MediaProcessor(limits: limits, pool: pool)
    }
}

/// A thumbnail box written `WxH`, or `N` for a square.
struct BoxSize: ExpressibleByArgument, Equatable {
    var width: Int
    var height: Int

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    init?(argument: String) {
        let parts = argument.lowercased().split(separator: "x", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let width = Int(parts[0]), let height = Int(parts.last!),
              (1...8192).contains(width), (1...8192).contains(height) else { return nil }
        self.init(width: width, height: height)
    }

    var defaultValueDescription: String { "\(width)x\(height)" }
}

extension ThumbnailRequest.Fit: ExpressibleByArgument {}
extension ThumbnailRequest.Format: ExpressibleByArgument {}
