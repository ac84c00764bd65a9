import ArgumentParser
import Foundation
import MediaPipeline

/// `mediagate thumbnail`: one thumbnail of one file.
struct MakeThumbnail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thumbnail",
        abstract: "Make a thumbnail: an image, a video's poster frame, a PDF's first page or audio cover art.",
        discussion: "Upright, never upscaled, without EXIF or GPS metadata."
    )

    @Argument(help: "The file to thumbnail.", completion: .file())
    var file: String

    @Option(name: .shortAndLong, help: "Where to write the thumbnail.")
    var output: String

    @Option(help: "Thumbnail box, WxH or N.")
    var size = BoxSize(width: 320, height: 320)

    @Option(help: "How the thumbnail meets its box: cover or contain.")
    var fit: ThumbnailRequest.Fit = .contain

    @Option(help: "jpeg, webp or png (default: from the output's extension, else jpeg).")
    var format: ThumbnailRequest.Format?

    @Option(help: "Encoder quality for JPEG and WebP, 1-100.")
    var quality = 80

    @OptionGroup var media: MediaOptions

    func validate() throws {
        guard (1...100).contains(quality) else { throw ValidationError("--quality must be between 1 and 100.") }
    }

    /// The format asked for, or the one the output name implies.
    var resolvedFormat: ThumbnailRequest.Format {
        if let format { return format }
        switch (output as NSString).pathExtension.lowercased() {
        case "webp": return .webp
        case "png": return .png
        default: return .jpeg
        }
    }

    func run() async throws {
        let request = ThumbnailRequest(width: size.width, height: size.height, fit: fit, format: resolvedFormat, quality: quality)
        do {
            let thumbnail = try await media.makeProcessor().thumbnail(fileAt: file, request: request)
            try thumbnail.data.write(to: URL(fileURLWithPath: output))
            FileHandle.standardError.write(Data("\(output): \(thumbnail.width)x\(thumbnail.height) \(thumbnail.format.rawValue), \(thumbnail.data.count) bytes\n".utf8))
        } catch let error as MediaError {
            FileHandle.standardError.write(Data("error: \(file): \(error.code): \(error.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}
