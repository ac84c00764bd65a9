internal import CFFmpeg
internal import CFFmpegShim

/// One open FFmpeg demuxer on a local file; closes it on deinit.
///
/// Opened with one named demuxer, the `file` protocol only, and an interrupt callback that
/// enforces the per-file deadline.
final class AVInput {
    let context: UnsafeMutablePointer<AVFormatContext>
    // FFmpeg's interrupt callback reads this for as long as the context lives.
    private let deadline: UnsafeMutablePointer<mg_av_deadline>

    init(path: String, demuxer: String, deadline: Deadline) throws(MediaError) {
        AVLibrary.start()
        let slot = UnsafeMutablePointer<mg_av_deadline>.allocate(capacity: 1)
        slot.initialize(to: mg_av_deadline(deadline_us: deadline.onClock(now: mg_av_now_us())))
        var opened: UnsafeMutablePointer<AVFormatContext>?
        let status = mg_av_open_local(&opened, path, demuxer, slot)
        guard status == 0, let opened else {
            slot.deallocate()
            throw AVLibrary.error(status, while: "opening the \(demuxer) container", deadline: deadline)
        }
        self.context = opened
        self.deadline = slot
    }

    deinit {
        var context: UnsafeMutablePointer<AVFormatContext>? = self.context
        avformat_close_input(&context)
        deadline.deallocate()
    }

    var streams: [UnsafeMutablePointer<AVStream>] {
        (0..<Int(context.pointee.nb_streams)).compactMap { context.pointee.streams[$0] }
    }
}

@available(*, unavailable, message: "an FFmpeg context is used by one thread at a time")
extension AVInput: Sendable {}

/// A decoder for one stream; frees it on deinit.
final class AVDecoder {
    let context: UnsafeMutablePointer<AVCodecContext>

    init(stream: UnsafeMutablePointer<AVStream>, maxPixels: Int) throws(MediaError) {
        let parameters = stream.pointee.codecpar!
        guard let codec = avcodec_find_decoder(parameters.pointee.codec_id) else {
            let name = String(cString: avcodec_get_name(parameters.pointee.codec_id))
            throw MediaError(.unsupported, "FFmpeg here has no decoder for \(name)")
        }
        guard let context = avcodec_alloc_context3(codec) else {
            throw MediaError(.io, "FFmpeg: out of memory")
        }
        self.context = context
        var status = avcodec_parameters_to_context(context, parameters)
        // One frame is wanted: frame threading would only delay it by a frame per thread,
        // and the worker pool already uses every core.
        context.pointee.thread_count = 1
        // No frame larger than the limit is ever allocated, whatever the bitstream claims.
        context.pointee.max_pixels = Int64(maxPixels)
        if status >= 0 { status = avcodec_open2(context, codec, nil) }
        guard status >= 0 else { throw AVLibrary.error(status, while: "opening the decoder") }
    }

    deinit {
        var context: UnsafeMutablePointer<AVCodecContext>? = self.context
        avcodec_free_context(&context)
    }
}

@available(*, unavailable)
extension AVDecoder: Sendable {}

/// An AVFrame owned by Swift.
final class AVFrameBox {
    let frame: UnsafeMutablePointer<AVFrame>

    init() throws(MediaError) {
        guard let frame = av_frame_alloc() else { throw MediaError(.io, "FFmpeg: out of memory") }
        self.frame = frame
    }

    deinit {
        var frame: UnsafeMutablePointer<AVFrame>? = self.frame
        av_frame_free(&frame)
    }
}

@available(*, unavailable)
extension AVFrameBox: Sendable {}

enum AVLibrary {
    static func start() { _ = started }

    private static let started: Bool = {
        mg_av_startup(AV_LOG_QUIET)
        return true
    }()

    /// A typed error for an FFmpeg status code, with FFmpeg's own text. A demuxer whose read
    /// was interrupted often reports "invalid data" rather than AVERROR_EXIT, so a failure after
    /// the deadline counts as a time-out whatever its code.
    static func error(_ status: Int32, while step: String, deadline: Deadline? = nil) -> MediaError {
        if status == mg_averror_exit() || deadline?.hasPassed == true {
            return MediaError(.timedOut, "FFmpeg stopped after the time limit while \(step)")
        }
        var buffer = [CChar](repeating: 0, count: 256)
        mg_av_strerror(status, &buffer, buffer.count)
        let text = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return MediaError(.corrupt, "FFmpeg, \(step): \(text)")
    }
}
