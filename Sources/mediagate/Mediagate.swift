import ArgumentParser

/// The `mediagate` command: media processing and upload gateway for real-time chat.
struct Mediagate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mediagate",
        abstract: "Media processing and upload gateway for real-time chat.",
        discussion: """
            Understands files (type from the bytes, dimensions as displayed, duration, pages, \
            codecs, thumbnails and BlurHash placeholders) with libmagic, libvips and FFmpeg.
            """,
        version: "0.1.0",
        subcommands: [Serve.self, UserCommand.self, Probe.self, MakeThumbnail.self, Login.self, Upload.self, DecodeWorker.self]
    )
}
